"""The fast path computes the model's mathematics: the packed recurrence with its hand-written backward and the fused
output layer give the same per-sentence loss terms and the same gradients as a plain reference written here, one
sentence and one step at a time, straight from the paper's equations.

The reference reads the model's parameters (the stochastic decoders' documented layout: ``recurrent`` holds the gates,
in the order output, input, forget, cell, then the posterior's h_{t-1} half, the attention query and the prior; the
deterministic decoder is ``nn.LSTM``) and the noise the model drew; float64 throughout, so agreement is to rounding
error.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqvae_zoo import build_model, parse_config
from seqvae_zoo.decoders.base import LATENT_MODES, OutputLayer
from seqvae_zoo.decoders.lstm import InputDropout
from seqvae_zoo.errors import LengthsError, UserError
from seqvae_zoo.kernels.matmul import linear, linear_layer, onednn_linear_available, rows_inner_product, zero_padded
from seqvae_zoo.kernels.output import linear_cross_entropy
from seqvae_zoo.kernels.recurrence import PackedLayout

VOCAB, PAD, BOS, EOS, UNK = 29, 0, 1, 2, 3
SMALL = ["EMBEDDING = 7", "HIDDEN = 6", "LATENT = 3", "decoders.attentive.attention_size = 5"]
SETUPS = {
    "lstm": (["lstm"], []),
    "vrae": (["vrae"], []),
    "stochastic": (["vrae"], ["models.SeqVAE.decoder = @decoders.stochastic"]),
    # the paper's literal aux term (learned variance, gradient into c_t): the reference scores exactly that
    "vrae_sa_aux": (["vrae_sa_aux"], ["aux_losses.context_prediction.weight = 0.7",
                                      "aux_losses.context_prediction.unit_variance = False",
                                      "aux_losses.context_prediction.detach_target = False"]),
}
LENGTHS = [5, 1, 7, 7, 3]  # unsorted, with a tie and a one-token sentence
WIDTH = 9  # more columns than the longest sentence


def small_model(setup: str):
    configs, bindings = SETUPS[setup]
    parse_config(configs, SMALL + bindings)
    torch.manual_seed(0)
    return build_model(vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, unk_id=UNK, eos_id=EOS).double().eval()


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(UNK + 1, VOCAB, (len(LENGTHS), WIDTH), generator=generator)
    for row, length in enumerate(LENGTHS):
        tokens[row, length - 1] = EOS
        tokens[row, length:] = PAD
    return tokens, torch.tensor(LENGTHS)


# -- the reference -----------------------------------------------------------------------------------------------
def log_normal(x, mean, logvar):
    return -0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 / logvar.exp()).sum()


def kl_normal(mean_q, logvar_q, mean_p, logvar_p):
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mean_q - mean_p) ** 2) / logvar_p.exp() - 1).sum()


def reference_terms(model, tokens, lengths, z_enc, mode, noise):
    """Per-sentence nll, KL terms, auxiliary term and log-weight, one sentence and one step at a time."""
    decoder, hidden_size = model.decoder, model.decoder.hidden_size
    latent = getattr(decoder, "latent_dim", 0)
    query = getattr(decoder, "query_size", 0)
    context_dim = getattr(decoder, "extra_latent_size", 0)
    memory = model.encoder(tokens, lengths) if model.encoder is not None else None
    rows = {name: [] for name in ("nll", "z_enc", "z_t", "aux", "log_weight")}
    for b, length in enumerate(lengths.tolist()):
        h = c = torch.zeros(hidden_size, dtype=torch.float64)
        nll = kl_t = aux = log_ratio = torch.zeros((), dtype=torch.float64)
        inputs = [BOS] + tokens[b, :length - 1].tolist()
        for t in range(length):
            x = decoder.embedding.weight[inputs[t]]
            if not latent:  # nn.LSTM's weights, gates in its order (input, forget, cell, output)
                rnn = decoder.rnn
                i, f, g, o = (rnn.weight_ih_l0 @ (torch.cat([x, z_enc[b]]) if z_enc is not None else x)
                              + rnn.bias_ih_l0 + rnn.weight_hh_l0 @ h + rnn.bias_hh_l0).split(hidden_size)
                gates = torch.cat([o, i, f, g])
            else:
                projected = decoder.recurrent.weight @ h + decoder.recurrent.bias
                gates, rest = projected[:4 * hidden_size], projected[4 * hidden_size:]
                posterior_h, query_h, prior_h = (rest[:2 * latent], rest[2 * latent:2 * latent + query],
                                                 rest[-2 * latent:])
                gates = gates + decoder.input_projection(x)
                if decoder.z_enc_projection is not None:
                    gates = gates + decoder.z_enc_projection.weight @ z_enc[b]
                prior_mean, prior_logvar = prior_h[:latent], prior_h[latent:]
                if mode.startswith("posterior"):
                    if query:  # eqs. 3-4 over the sentence's own encoder states
                        states = memory.states[b, :length]
                        scores = decoder.score.weight[0] @ torch.tanh(
                            decoder.key_projection.weight @ states.T + query_h[:, None])
                        context = torch.softmax(scores, 0) @ states
                    else:
                        context = memory.final[b]
                    params = posterior_h + decoder.posterior_context.weight @ context
                    mean, logvar = params[:latent], params[latent:]
                else:
                    mean, logvar = prior_mean, prior_logvar
                z = mean if mode.endswith("_mean") else mean + (0.5 * logvar).exp() * noise[0][t, b]
                if mode.startswith("posterior"):
                    kl_t = kl_t + kl_normal(mean, logvar, prior_mean, prior_logvar)
                    log_ratio = log_ratio + log_normal(z, prior_mean, prior_logvar) - log_normal(z, mean, logvar)
                latents = z
                if context_dim:
                    context_prior = decoder.context_prior.weight @ z + decoder.context_prior.bias
                    c_mean, c_logvar = context_prior[:context_dim], context_prior[context_dim:]
                    predicted = c_mean if mode.endswith("_mean") else (
                        c_mean + (0.5 * c_logvar).exp() * noise[1][t, b])
                    latents = torch.cat([z, predicted])
                    if mode.startswith("posterior"):
                        aux = aux - log_normal(context @ decoder.context_target_projection, c_mean, c_logvar)
                gates = gates + decoder.latent_projection.weight @ latents
            o, i, f, g = gates.split(hidden_size)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            logits = decoder.output.weight @ h + decoder.output.bias
            nll = nll - torch.log_softmax(logits, 0)[tokens[b, t]]
        rows["nll"].append(nll)
        rows["z_t"].append(kl_t)
        rows["aux"].append(aux)
        log_weight = -nll + log_ratio
        if memory is not None:
            mean, logvar = memory.posterior.mean[b], memory.posterior.logvar[b]
            rows["z_enc"].append(kl_normal(mean, logvar, torch.zeros_like(mean), torch.zeros_like(logvar)))
            log_weight = log_weight + log_normal(z_enc[b], torch.zeros_like(mean), torch.zeros_like(logvar)) \
                - log_normal(z_enc[b], mean, logvar)
        rows["log_weight"].append(log_weight)
    kept = {"nll", "log_weight"} | ({"z_enc"} if memory is not None else set()) | ({"z_t"} if latent else set()) \
        | ({"aux"} if model.aux_losses else set())
    return {name: torch.stack(values) for name, values in rows.items() if name in kept}


def fast_terms(model, tokens, lengths, z_enc, mode):
    terms = model(tokens, lengths, mode, z_enc=z_enc)
    values = {"nll": terms.nll, "log_weight": terms.log_weight, **terms.kl}
    if model.aux_losses:  # not computed in the prior modes, where the reference gives 0
        values["aux"] = terms.aux.get("context_prediction", torch.zeros_like(terms.nll))
    return values


def recording_noise(model, monkeypatch):
    """Record the noise the decoder draws, so that the reference can use the very same numbers."""
    drawn = []
    if hasattr(model.decoder, "_draw_noise"):
        draw = model.decoder._draw_noise

        def record(*args, **kwargs):
            drawn.append(draw(*args, **kwargs))
            return drawn[-1]
        monkeypatch.setattr(model.decoder, "_draw_noise", record)
    return drawn


def replaying_noise(model, drawn, monkeypatch):
    """Give the decoder, at each draw, the noise another model drew (moved to this model's device)."""
    replay = iter(drawn)
    monkeypatch.setattr(model.decoder, "_draw_noise", lambda steps, batch, like: tuple(
        n.to(like.device) if n is not None else None for n in next(replay)))


def weighted_sum(values: dict[str, torch.Tensor], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return sum((torch.rand(value.shape, generator=generator, dtype=value.dtype).to(value.device) * value).sum()
               for _, value in sorted(values.items()))


def gradients(model, z_enc, loss):
    leaves = [p for p in model.parameters()] + ([z_enc] if z_enc is not None else [])
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    names = [name for name, _ in model.named_parameters()] + (["z_enc"] if z_enc is not None else [])
    return {name: grad for name, grad in zip(names, grads)}


# -- the tests ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", LATENT_MODES)
@pytest.mark.parametrize("setup", list(SETUPS))
def test_fast_path_gives_the_reference_terms_and_gradients(setup, mode, monkeypatch):
    if not model_has_latents(setup) and mode != "posterior":
        pytest.skip("a deterministic decoder has one mode")
    model = small_model(setup)
    tokens, lengths = batch()
    z_enc = (torch.randn(len(LENGTHS), 3, dtype=torch.float64, requires_grad=True)
             if model.encoder is not None else None)
    drawn = recording_noise(model, monkeypatch)
    torch.manual_seed(2)
    fast = fast_terms(model, tokens, lengths, z_enc, mode)
    noise = drawn[0] if drawn else None
    reference = reference_terms(model, tokens, lengths, z_enc, mode, noise)
    assert set(fast) == set(reference)
    for name in reference:
        torch.testing.assert_close(fast[name], reference[name], rtol=1e-10, atol=1e-10, msg=f"{name} differs")
    fast_grads = gradients(model, z_enc, weighted_sum(fast, seed=3))
    reference_grads = gradients(model, z_enc, weighted_sum(reference, seed=3))
    for name, expected in reference_grads.items():
        got = fast_grads[name]
        if expected is None:  # not read in this mode (the attention, say, in the prior modes)
            assert got is None or torch.all(got == 0), f"{name} has a gradient the reference does not"
            continue
        assert got is not None, f"{name} has no gradient"
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10, msg=f"gradient of {name} differs")


@pytest.mark.parametrize("setup", ["vrae", "stochastic", "vrae_sa_aux"])
def test_a_decoder_held_fixed_gives_the_same_gradients_below_it_without_its_weight_products(setup, monkeypatch):
    """An encoder-only step (aggressive training) or a gradient in the posterior's parameters only (SA-VAE's
    refinement) holds the decoder fixed: the fused kernels then skip their weight gradients' products (the output
    layer's (V, H) one, the recurrence's), and what reaches z_enc and the encoder is the same to the bit."""
    from seqvae_zoo.kernels import output, recurrence
    from seqvae_zoo.training.procedures.base import held_fixed

    model = small_model(setup).train()
    tokens, lengths = batch()
    decoder = list(model.decoder.parameters())
    weight_products = []
    for module in (output, recurrence):
        monkeypatch.setattr(module, "rows_inner_product", lambda *args, _f=module.rows_inner_product, **kwargs: (
            weight_products.append(args[0].shape), _f(*args, **kwargs))[1])

    def encoder_gradients() -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        model.objective(model(tokens, lengths), {"z_enc": 1.0}).backward()
        return [parameter.grad for parameter in model.encoder.parameters()]

    full = encoder_gradients()
    assert len(weight_products) == (1 if setup == "vrae" else 2)  # the output layer's, and the packed recurrence's
    weight_products.clear()
    with held_fixed(decoder):
        fixed = encoder_gradients()
    assert weight_products == [] and all(parameter.grad is None for parameter in decoder)
    assert all(parameter.requires_grad for parameter in decoder)  # as they were after the block
    assert all(torch.equal(a, b) for a, b in zip(full, fixed))


@pytest.mark.parametrize("mode", LATENT_MODES)
@pytest.mark.parametrize("setup", ["stochastic", "vrae_sa_aux"])
def test_packed_recurrence_gives_the_decoders_own_equations_in_training_too(setup, mode, monkeypatch):
    """The LSTM cell's packed recurrence and the decoder's step-by-step equations (the path every cell without a
    packed kernel takes) give the same terms and gradients from the same draws, dropout included."""
    model = small_model(setup).train()
    tokens, lengths = batch()

    def terms_and_gradients(packed: bool):
        monkeypatch.setattr(model.decoder.cell, "packed", packed)
        torch.manual_seed(4)
        values = fast_terms(model, tokens, lengths, None, mode)
        return values, gradients(model, None, weighted_sum(values, seed=5))

    (fast, fast_grads), (equations, equation_grads) = terms_and_gradients(True), terms_and_gradients(False)
    for name, value in equations.items():
        torch.testing.assert_close(fast[name], value, rtol=1e-10, atol=1e-10, msg=f"{name} differs")
    for name, expected in equation_grads.items():
        if expected is None:
            assert fast_grads[name] is None or torch.all(fast_grads[name] == 0), name
        else:
            torch.testing.assert_close(fast_grads[name], expected, rtol=1e-9, atol=1e-10, msg=f"gradient of {name}")


def model_has_latents(setup: str) -> bool:
    return setup in ("stochastic", "vrae_sa_aux")


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@requires_cuda
@pytest.mark.parametrize("mode", LATENT_MODES)
@pytest.mark.parametrize("setup", list(SETUPS))
def test_on_cuda_the_fast_path_gives_the_cpu_terms_and_gradients(setup, mode, monkeypatch):
    """The same code on a GPU (float64, so agreement is to rounding): given the noise the CPU model drew, the loss
    terms and every gradient are the CPU's, which the test above holds to the reference."""
    if not model_has_latents(setup) and mode != "posterior":
        pytest.skip("a deterministic decoder has one mode")
    device = torch.device("cuda")
    cpu_model, device_model = small_model(setup), small_model(setup).to(device)
    tokens, lengths = batch()
    z_enc = (torch.randn(len(LENGTHS), 3, dtype=torch.float64, requires_grad=True)
             if cpu_model.encoder is not None else None)
    device_z_enc = z_enc.detach().to(device).requires_grad_() if z_enc is not None else None
    drawn = recording_noise(cpu_model, monkeypatch)
    cpu_terms = fast_terms(cpu_model, tokens, lengths, z_enc, mode)
    if drawn:
        replaying_noise(device_model, drawn, monkeypatch)
    device_terms = fast_terms(device_model, tokens.to(device), lengths.to(device), device_z_enc, mode)
    assert set(device_terms) == set(cpu_terms)
    for name, expected in cpu_terms.items():
        assert device_terms[name].device.type == device.type
        torch.testing.assert_close(device_terms[name].cpu(), expected, rtol=1e-10, atol=1e-10, msg=f"{name} differs")
    cpu_grads = gradients(cpu_model, z_enc, weighted_sum(cpu_terms, seed=3))
    device_grads = gradients(device_model, device_z_enc, weighted_sum(device_terms, seed=3))
    for name, expected in cpu_grads.items():
        got = device_grads[name]
        if expected is None or got is None:  # a parameter this mode does not read
            assert got is None or torch.all(got == 0), f"{name} has a gradient on the GPU only"
            assert expected is None or torch.all(expected == 0), f"{name} has a gradient on the CPU only"
            continue
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-9, atol=1e-10, msg=f"gradient of {name} differs")


def test_scoring_without_gradients_gives_the_same_terms():
    """Without gradients the recurrence keeps nothing for a backward pass and the output layer goes through in
    blocks with a log-softmax; the numbers must agree to float64 rounding (not bit for bit: the two softmax paths
    sum in orders that depend on the processor's vector width)."""
    model = small_model("vrae_sa_aux")
    tokens, lengths = batch(seed=4)
    torch.manual_seed(5)
    with_grad = model(tokens, lengths)
    torch.manual_seed(5)
    with torch.inference_mode():
        without = model(tokens, lengths)
    for name in ("nll", "log_weight"):
        torch.testing.assert_close(getattr(without, name), getattr(with_grad, name).detach(), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("setup", ["vrae", "vrae_sa_aux"])
def test_float32_model_with_onednn_gives_the_terms_and_gradients_of_torchs_own_products(setup, monkeypatch):
    """In float32 on a CPU the output layer, the input projection and the recurrence's products go through oneDNN;
    turning it off (torch's own products) changes the loss terms and gradients by float32 rounding only."""
    if not onednn_linear_available():
        pytest.skip("this torch has no oneDNN linear operator")
    monkeypatch.setattr("seqvae_zoo.kernels.matmul.ONEDNN_MIN_MACS", 0)  # every product of the small model
    model = small_model(setup).float()
    tokens, lengths = batch(seed=6)

    def terms_and_gradients():
        torch.manual_seed(7)
        values = fast_terms(model, tokens, lengths, None, "posterior")
        loss = weighted_sum(values, seed=8)
        return values, dict(zip([name for name, _ in model.named_parameters()],
                                torch.autograd.grad(loss, list(model.parameters()))))
    fast_values, fast_grads = terms_and_gradients()
    monkeypatch.setattr("seqvae_zoo.kernels.matmul.onednn_linear_available", lambda: False)
    plain_values, plain_grads = terms_and_gradients()
    for name in plain_values:
        torch.testing.assert_close(fast_values[name], plain_values[name], rtol=1e-4, atol=1e-4, msg=name)
    for name in plain_grads:
        torch.testing.assert_close(fast_grads[name], plain_grads[name], rtol=1e-4, atol=1e-4, msg=name)


def test_training_mode_gradients_match_a_finite_difference():
    """Dropout on (training mode, float64): the fused output layer and the recurrence still give the derivative."""
    model = small_model("vrae_sa_aux").train()
    tokens, lengths = batch(seed=6)
    parameter = model.decoder.recurrent.weight

    def loss() -> torch.Tensor:
        torch.manual_seed(7)
        return model.objective(model(tokens, lengths), {})

    analytic = torch.autograd.grad(loss(), parameter)[0]
    direction = torch.randn_like(parameter)
    step = 1e-6
    with torch.no_grad():
        parameter += step * direction
        upper = loss()
        parameter -= 2 * step * direction
        lower = loss()
        parameter += step * direction
    torch.testing.assert_close((upper - lower) / (2 * step), (analytic * direction).sum(), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("rows", [1, 7, 40])
def test_fused_output_layer_is_the_softmax_cross_entropy(rows, monkeypatch):
    """Values and gradients of the fused layer equal cross_entropy(linear(...)), also when the rows are cut into
    several blocks and when targets repeat."""
    monkeypatch.setattr("seqvae_zoo.kernels.output.OUTPUT_BLOCK_ELEMENTS", 3 * VOCAB)
    generator = torch.Generator().manual_seed(8)
    hidden = torch.randn(rows, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(VOCAB, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(VOCAB, dtype=torch.float64, generator=generator, requires_grad=True)
    targets = torch.randint(0, 4, (rows,), generator=generator)
    upstream = torch.rand(rows, dtype=torch.float64, generator=generator)
    fused = linear_cross_entropy(hidden, weight, bias, targets)
    plain = F.cross_entropy(F.linear(hidden, weight, bias), targets, reduction="none")
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
    for got, expected in zip(torch.autograd.grad((fused * upstream).sum(), (hidden, weight, bias)),
                             torch.autograd.grad((plain * upstream).sum(), (hidden, weight, bias))):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # in blocks of 3 rows
        torch.testing.assert_close(linear_cross_entropy(hidden, weight, bias, targets), plain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("onednn", [True, False])
def test_fused_output_layer_in_float32_with_and_without_onednn(onednn, monkeypatch):
    """The float32 products go through oneDNN where it is available; either way values and gradients are the
    float64 softmax cross-entropy's to float32 rounding."""
    if onednn and not onednn_linear_available():
        pytest.skip("this torch has no oneDNN linear operator")
    monkeypatch.setattr("seqvae_zoo.kernels.matmul.onednn_linear_available", lambda: onednn)
    monkeypatch.setattr("seqvae_zoo.kernels.matmul.ONEDNN_MIN_MACS", 0)  # these small products too
    generator = torch.Generator().manual_seed(9)
    hidden = torch.randn(37, 24, generator=generator, requires_grad=True)
    weight = torch.randn(301, 24, generator=generator, requires_grad=True)
    bias = torch.randn(301, generator=generator, requires_grad=True)
    targets = torch.randint(0, 301, (37,), generator=generator)
    upstream = torch.rand(37, generator=generator)
    fused = linear_cross_entropy(hidden, weight, bias, targets)
    leaves = (hidden, weight, bias)
    exact = F.cross_entropy(F.linear(*(x.double() for x in leaves)), targets, reduction="none")
    torch.testing.assert_close(fused.double(), exact, rtol=1e-5, atol=1e-5)
    exact_grads = torch.autograd.grad((exact * upstream.double()).sum(), leaves)
    for got, expected in zip(torch.autograd.grad((fused * upstream).sum(), leaves), exact_grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(hidden, weight, bias, targets).double(), exact, rtol=1e-5,
                                   atol=1e-5)


def test_output_weight_gradient_arrives_in_the_parameters_contiguous_layout():
    """The decoders hold the output weight as its contiguous transpose, the layout the fused layer's weight gradient
    comes out in (and the one torch's fused CPU Adam takes without a copy); a row-major weight gets the same
    gradient in its own layout."""
    model = small_model("vrae_sa_aux").train()
    weight_t = model.decoder.output.weight_t
    assert weight_t.is_contiguous() and weight_t.shape == model.decoder.output.weight.t().shape
    tokens, lengths = batch(seed=2)
    torch.manual_seed(3)
    model.objective(model(tokens, lengths), {}).backward()
    assert weight_t.grad.is_contiguous()

    generator = torch.Generator().manual_seed(4)
    hidden = torch.randn(9, 6, generator=generator, dtype=torch.float64)
    row_major = torch.randn(11, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    column_major = row_major.detach().t().contiguous().t().requires_grad_()
    bias = torch.zeros(11, dtype=torch.float64)
    targets = torch.randint(0, 11, (9,), generator=generator)
    for w in (row_major, column_major):
        linear_cross_entropy(hidden, w, bias, targets).sum().backward()
    assert row_major.grad.stride() == (6, 1) and column_major.grad.stride() == (1, 11)
    torch.testing.assert_close(row_major.grad, column_major.grad, rtol=1e-12, atol=1e-12)


def test_output_layer_computes_as_nn_linear_and_loads_its_state_dict():
    """Same initialization and logits as ``nn.Linear``; its state dict (``weight`` (out, in)) loads, and a mismatched
    one is refused."""
    torch.manual_seed(5)
    linear = nn.Linear(6, 11)
    torch.manual_seed(5)
    output = OutputLayer(6, 11)
    torch.testing.assert_close(output.weight, linear.weight, rtol=0, atol=0)
    inputs = torch.randn(4, 6)
    torch.testing.assert_close(output(inputs), linear(inputs))
    assert list(output.state_dict()) == [name for name, _ in output.named_parameters()] == ["weight_t", "bias"]
    with torch.no_grad():
        linear.weight.add_(1.0)
    output.load_state_dict(linear.state_dict())
    torch.testing.assert_close(output.weight, linear.weight, rtol=0, atol=0)
    assert output.weight_t.is_contiguous()
    with pytest.raises(RuntimeError, match=r"size mismatch for weight_t"):
        output.load_state_dict(nn.Linear(6, 3).state_dict())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_output_layer_is_exact_where_the_targets_probability_underflows(dtype):
    """The target's probability underflows to 0 in the softmax here (row 0): the loss of that row comes from its
    logits, the others' from the softmax."""
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=dtype, requires_grad=True)
    weight = torch.tensor([[900.0, 0.0], [0.0, 0.0], [-900.0, 3.0]], dtype=dtype, requires_grad=True)
    bias = torch.zeros(3, dtype=dtype, requires_grad=True)
    targets = torch.tensor([2, 0, 2])
    fused = linear_cross_entropy(hidden, weight, bias, targets)
    plain = F.cross_entropy(F.linear(hidden, weight, bias), targets, reduction="none")
    assert fused.detach()[0].item() == pytest.approx(1800.0)
    torch.testing.assert_close(fused, plain)
    for got, expected in zip(torch.autograd.grad(fused.sum(), (hidden, weight, bias)),
                             torch.autograd.grad(plain.sum(), (hidden, weight, bias))):
        torch.testing.assert_close(got, expected)


def test_packed_layout_sorts_by_length_and_skips_padding():
    layout = PackedLayout.from_lengths(torch.tensor([2, 3, 1, 3]), width=4)
    assert layout.order.tolist() == [1, 3, 0, 2] and layout.batch_sizes == [4, 3, 2]
    assert layout.offsets == [0, 4, 7]
    assert layout.sentence.tolist() == [1, 3, 0, 2, 1, 3, 0, 1, 3]
    padded = torch.arange(16.0).view(4, 4)
    packed = layout.pack(padded)
    assert packed.tolist() == [4, 12, 0, 8, 5, 13, 1, 6, 14]
    assert layout.unpack(packed).tolist() == [[0, 1, 0, 0], [4, 5, 6, 0], [8, 0, 0, 0], [12, 13, 14, 0]]
    by_rank = layout.by_rank(packed)  # ranks: sentences 1, 3, 0, 2
    assert by_rank.tolist() == [[4, 5, 6], [12, 13, 14], [0, 1, 0], [8, 0, 0]]
    assert layout.from_rank(by_rank).tolist() == packed.tolist()


@pytest.mark.parametrize("lengths", [[3, 0], [3, 5], []])
def test_lengths_that_do_not_fit_the_batch_are_refused(lengths):
    with pytest.raises(LengthsError, match="between 1 .* and the batch's 4 columns"):
        PackedLayout.from_lengths(torch.tensor(lengths, dtype=torch.long), width=4)


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_input_dropout_zeroes_with_probability_p_and_rescales_the_rest(p):
    dropout = InputDropout(p)
    inputs = torch.rand(400, 250, dtype=torch.float64) + 1.0
    torch.manual_seed(9)
    outputs = dropout(inputs)
    dropped = outputs == 0
    kept = ~dropped
    torch.testing.assert_close(outputs[kept], inputs[kept] / (1 - p), rtol=1e-15, atol=0)
    count = inputs.numel()
    assert abs(dropped.sum().item() - p * count) < 5 * math.sqrt(count * p * (1 - p))
    assert torch.equal(dropout.eval()(inputs), inputs)


def reference_encoder(encoder, tokens, lengths):
    """States (B, S, state size), zero past each sentence's end, and the summary, one sentence at a time."""
    rnn, size = encoder.rnn, encoder.rnn.hidden_size

    def run(embedded, suffix):
        h = c = embedded.new_zeros(size)
        outputs = []
        for x in embedded:
            i, f, g, o = (getattr(rnn, f"weight_ih_l0{suffix}") @ x + getattr(rnn, f"bias_ih_l0{suffix}")
                          + getattr(rnn, f"weight_hh_l0{suffix}") @ h + getattr(rnn, f"bias_hh_l0{suffix}")
                          ).split(size)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs)

    states = tokens.new_zeros(tokens.shape + (encoder.state_size,), dtype=encoder.embedding.weight.dtype)
    finals = []
    for b, length in enumerate(lengths.tolist()):
        embedded = encoder.embedding.weight[tokens[b, :length]]
        forward = run(embedded, "")
        if rnn.bidirectional:
            backward = run(embedded.flip(0), "_reverse").flip(0)
            states[b, :length] = torch.cat([forward, backward], dim=1)
            finals.append(torch.cat([forward[-1], backward[0]]))
        else:
            states[b, :length] = forward
            finals.append(forward[-1])
    return states, torch.stack(finals)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # float32 takes the fused library LSTM (oneDNN)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_encoder_states_and_gradients_match_a_step_by_step_reference(bidirectional, dtype):
    """The unidirectional encoder runs over the padding in one fused call; the padded steps must change no state,
    no summary and no gradient of a real position."""
    parse_config(["vrae"], SMALL + [f"encoders.lstm.bidirectional = {bidirectional}"])
    torch.manual_seed(0)
    encoder = build_model(vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, unk_id=UNK, eos_id=EOS).encoder.to(dtype)
    tokens, lengths = batch(seed=5)
    output = encoder(tokens, lengths)
    states, final = reference_encoder(encoder, tokens, lengths)
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(output.states, states, **tolerance)
    torch.testing.assert_close(output.final, final, **tolerance)
    assert output.mask.tolist() == [[t < length for t in range(WIDTH)] for length in LENGTHS]
    upstream = torch.Generator().manual_seed(6)
    weights = [torch.rand(x.shape, generator=upstream, dtype=dtype) for x in (states, final)]
    parameters = list(encoder.rnn.parameters()) + [encoder.embedding.weight]
    fast = torch.autograd.grad(sum((w * x).sum() for w, x in zip(weights, (output.states, output.final))),
                               parameters)
    plain = torch.autograd.grad(sum((w * x).sum() for w, x in zip(weights, (states, final))), parameters)
    for got, expected in zip(fast, plain):
        torch.testing.assert_close(got, expected, **tolerance)


@pytest.mark.parametrize("setup", ["lstm", "vrae", "vrae_sa_aux"])
@pytest.mark.parametrize("lengths", [[3, 0], [3, 10], []])
def test_every_model_refuses_lengths_that_do_not_fit_the_batch(setup, lengths):
    model = small_model(setup)
    tokens = torch.full((len(lengths), WIDTH), UNK + 1)
    with pytest.raises(LengthsError, match=f"between 1 .* and the batch's {WIDTH} columns"):
        model(tokens, torch.tensor(lengths, dtype=torch.long))


@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_layer_through_onednn_gives_f_linear_and_its_gradients(with_bias, monkeypatch):
    """The decoders' input projection in float32 on a CPU: values and gradients of F.linear to float32 rounding."""
    if not onednn_linear_available():
        pytest.skip("this torch has no oneDNN linear operator")
    monkeypatch.setattr("seqvae_zoo.kernels.matmul.ONEDNN_MIN_MACS", 0)  # these small products too
    generator = torch.Generator().manual_seed(10)
    inputs = torch.randn(45, 33, generator=generator, requires_grad=True)
    weight = torch.randn(70, 33, generator=generator, requires_grad=True)
    bias = torch.randn(70, generator=generator, requires_grad=True) if with_bias else None
    leaves = [x for x in (inputs, weight, bias) if x is not None]
    upstream = torch.rand(45, 70, generator=generator)
    fast = linear_layer(inputs, weight, bias)
    plain = F.linear(inputs, weight, bias)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    for got, expected in zip(torch.autograd.grad((fast * upstream).sum(), leaves),
                             torch.autograd.grad((plain * upstream).sum(), leaves)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    frozen = linear_layer(inputs, weight.detach(), bias)  # only the gradients that are asked for
    (d_inputs,) = torch.autograd.grad((frozen * upstream).sum(), [inputs])
    torch.testing.assert_close(d_inputs, upstream @ weight.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("onednn", [True, False])
@pytest.mark.parametrize("widths", [(7, 90), (90, 7)])
def test_rows_inner_product_is_the_sum_over_rows_and_ignores_zero_rows(onednn, widths, monkeypatch):
    """left^T right whichever operand is the narrower (the one oneDNN copies), contiguous, the same with the rows
    padded by zeros (as the weight gradients pad them) and for column slices of a wider block (as the gate columns
    of the recurrence's gradient are), through oneDNN or torch."""
    if onednn and not onednn_linear_available():
        pytest.skip("this torch has no oneDNN linear operator")
    monkeypatch.setattr("seqvae_zoo.kernels.matmul.onednn_linear_available", lambda: onednn)
    monkeypatch.setattr("seqvae_zoo.kernels.matmul.ONEDNN_MIN_MACS", 0)
    generator = torch.Generator().manual_seed(11)
    left, right = (torch.randn(37, width + 5, generator=generator)[:, :width] for width in widths)
    exact = left.double().t() @ right.double()
    for rows in (37, 64):
        got = rows_inner_product(zero_padded(left, rows), zero_padded(right, rows))
        assert got.shape == widths and got.is_contiguous()
        torch.testing.assert_close(got.double(), exact, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("value", ["off", "true", ""])
def test_an_unknown_onednn_switch_is_refused_with_what_to_set(value, monkeypatch):
    monkeypatch.setenv("SEQVAE_ONEDNN_MATMUL", value)
    onednn_linear_available.cache_clear()
    try:
        with pytest.raises(UserError, match=f"SEQVAE_ONEDNN_MATMUL must be 0 .* or 1 .*not '{value}'"):
            onednn_linear_available()
    finally:
        monkeypatch.undo()
        onednn_linear_available.cache_clear()


def test_onednn_is_used_only_where_it_exists_agrees_and_is_not_turned_off(monkeypatch):
    def probe() -> bool:
        onednn_linear_available.cache_clear()
        return onednn_linear_available()

    def refusing(*args):
        raise RuntimeError("unsupported")

    def wrong(inputs, weight, bias, *args):
        return F.linear(inputs, weight, bias) + 1

    try:
        monkeypatch.setenv("SEQVAE_ONEDNN_MATMUL", "0")
        assert not probe()
        monkeypatch.delenv("SEQVAE_ONEDNN_MATMUL")
        monkeypatch.setattr("seqvae_zoo.kernels.matmul.ONEDNN_MIN_MACS", 0)
        for broken in (refusing, wrong):
            monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", broken)
            assert not probe()
            inputs, weight = torch.randn(3, 4), torch.randn(5, 4)
            torch.testing.assert_close(linear_layer(inputs, weight), F.linear(inputs, weight))
    finally:
        monkeypatch.undo()
        onednn_linear_available.cache_clear()


def test_the_onednn_probe_gives_the_same_answer_when_first_asked_inside_bf16_autocast():
    onednn_linear_available.cache_clear()
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as the first product of a bfloat16 training step asks
            inside = onednn_linear_available()
        onednn_linear_available.cache_clear()
        assert inside == onednn_linear_available()
    finally:
        onednn_linear_available.cache_clear()


def test_products_too_small_to_pay_for_onednn_stay_with_torch(monkeypatch):
    if not onednn_linear_available():
        pytest.skip("this torch has no oneDNN linear operator")
    operator, calls = torch.ops.mkldnn._linear_pointwise, []

    def recording(inputs, *args):
        calls.append(tuple(inputs.shape))
        return operator(inputs, *args)
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", recording)
    small = linear(torch.randn(32, 64), torch.randn(352, 64))  # 0.7 million multiply-adds
    large = linear(torch.randn(32, 256), torch.randn(1344, 256))  # 11 million
    assert calls == [(32, 256)] and small.shape == (32, 352) and large.shape == (32, 1344)
