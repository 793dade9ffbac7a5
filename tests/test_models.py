"""The models: every preset builds and trains a step, no decoder looks ahead, padding changes no loss term, and
generation never reads the encoder.

Most tests use small sizes (gin bindings on the presets' size macros) and float64, so that "unchanged" can be
checked to rounding error; one test builds the presets at the paper's sizes.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest
import torch
from torch import nn

from plugin_fixture import EXAMPLE_GIN, isolated_registrations
from seqvae_zoo import SeqVAE, build_model, parse_config, preset_names
from seqvae_zoo.decoders.base import LATENT_MODES, DecoderOutput
from seqvae_zoo.errors import BatchError, UserError
from seqvae_zoo.evaluation.importance import importance_log_likelihood
from seqvae_zoo.gaussian import DiagGaussian
from seqvae_zoo.model import LossTerms
from seqvae_zoo.registry import DECODERS

VOCAB, PAD, BOS, EOS, UNK = 23, 0, 1, 2, 3
SMALL = ["EMBEDDING = 12", "HIDDEN = 16", "LATENT = 5"]
#: The encoder's state size in the decoder tests, unlike every other size, so that the layers reading the encoder's
#: states can be told apart by their input size.
ENCODER_STATE = 7

#: What each preset's loss holds: its KL terms and its auxiliary terms.
PRESET_TERMS = {
    "lstm": ((), ()),
    "vrae": (("z_enc",), ()),
    "vrae_sa": (("z_enc", "z_t"), ()),
    "vrae_sa_aux": (("z_enc", "z_t"), ("context_prediction",)),
    "vrae_sa_aux_literal": (("z_enc", "z_t"), ("context_prediction",)),
}
#: The paper's presets, whose sizes are the paper's; the zoo's presets of other papers add theirs to PRESET_TERMS.
PAPER_PRESETS = tuple(PRESET_TERMS)
PRESET_TERMS |= {name: (("z_enc",), ()) for name in (
    "aggressive", "beta_vae", "bn_vae_06", "bn_vae_07", "bowman", "cyclical", "delta_vae", "free_bits_reset", "sa_vae",
    "skip_vae", "transformer_vae", "vamp_vae", "vmf_vae")}
#: Presets whose KL is a one-sample Monte-Carlo estimate (no closed form under their prior), which may be negative.
MONTE_CARLO_KL = {"vamp_vae"}

#: Every decoder in each setting it is used in (the coverage test below asks for every registered decoder).
DECODER_SETUPS = {
    "lstm-language-model": (["lstm"], []),
    "lstm-given-z_enc": (["vrae"], []),
    "stochastic": (["vrae"], ["models.SeqVAE.decoder = @decoders.stochastic"]),
    "attentive": (["vrae_sa"], []),
    "gru-example": ([str(EXAMPLE_GIN)], []),
    **{f"transformer-{name}": (configs, ["models.SeqVAE.decoder = @decoders.transformer",
                                         "decoders.transformer.hidden_size = %HIDDEN", *bindings])
       for name, (configs, bindings) in {"z_enc-prefix": (["vrae"], []),
                                         "z_enc-memory": (["vrae"], ["decoders.transformer.z_enc_as = 'memory'"]),
                                         "language-model": (["lstm"], [])}.items()},
    "stochastic-gru-cell": (["vrae"], ["models.SeqVAE.decoder = @decoders.stochastic",
                                       'decoders.stochastic.cell = "gru"']),
    "attentive-gru-cell": (["vrae_sa"], ['decoders.attentive.cell = "gru"']),
}

#: Models whose loss terms are checked for padding: every preset, the mixture prior and the plain stochastic decoder.
#: vmf_vae's sampler draws by rejection, which PositionalNoise cannot align across widths: its padding is checked at
#: the posterior mean (ALONE_SETUPS).
PADDING_SETUPS = {name: ([name], []) for name in PRESET_TERMS if name != "vmf_vae"} | {
    "vrae-mixture-prior": (["vrae"], ["models.SeqVAE.latent_prior = @priors.mixture", "priors.mixture.components = 3"]),
    "stochastic": DECODER_SETUPS["stochastic"],
    "vrae_sa_aux-gru-cell": (["vrae_sa_aux"], ['decoders.attentive.cell = "gru"']),
}
ALONE_SETUPS = PADDING_SETUPS | {"vmf_vae": (["vmf_vae"], [])}


def small_model(configs: list[str], bindings: list[str], seed: int = 0) -> SeqVAE:
    parse_config(configs, SMALL + bindings)
    torch.manual_seed(seed)
    return build_model(vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, unk_id=UNK, eos_id=EOS).double().eval()


@pytest.fixture(params=list(DECODER_SETUPS))
def decoder_model(request, monkeypatch) -> Iterator[SeqVAE]:
    configs, bindings = DECODER_SETUPS[request.param]
    with contextlib.ExitStack() as stack:
        if request.param == "gru-example":  # the example registers decoders.gru through the gin file's import
            stack.enter_context(isolated_registrations(monkeypatch))
            monkeypatch.syspath_prepend(str(EXAMPLE_GIN.parent))
        yield small_model(configs, bindings + [f"encoders.lstm.hidden_size = {ENCODER_STATE}"])


def sentences(lengths: list[int], width: int | None = None, seed: int = 0, filler: int = PAD) -> torch.Tensor:
    """Random sentences ending in end-of-sentence, ``filler`` after their end, ``width`` columns."""
    generator = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    tokens = torch.full((len(lengths), width), filler)
    for row, length in enumerate(lengths):
        tokens[row, :length - 1] = torch.randint(UNK + 1, VOCAB, (length - 1,), generator=generator)
        tokens[row, length - 1] = EOS
    return tokens


def decoder_inputs(batch: int, steps: int, seed: int) -> torch.Tensor:
    """Teacher-forcing inputs: begin-of-sentence, then random words."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(UNK + 1, VOCAB, (batch, steps), generator=generator)
    inputs[:, 0] = BOS
    return inputs


def change_from(inputs: torch.Tensor, position: int) -> torch.Tensor:
    """The same inputs, with every position from ``position`` on replaced by a different word."""
    changed = inputs.clone()
    changed[:, position:] = (inputs[:, position:] - UNK) % (VOCAB - UNK - 1) + UNK + 1
    assert torch.all(changed[:, position:] != inputs[:, position:])
    return changed


def per_step_tensors(output: DecoderOutput, logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every per-step result of a decoder, (B, T, ...), by name."""
    tensors = {"hidden": output.hidden, "logits": logits}
    if output.log_ratio is not None:
        tensors["log_ratio"] = output.log_ratio
    tensors |= {f"kl.{name}": value for name, value in output.kl.items()}
    for name, value in output.extras.items():
        if isinstance(value, DiagGaussian):
            tensors |= {f"{name}.mean": value.mean, f"{name}.logvar": value.logvar}
        else:
            tensors[name] = value
    if output.attention is not None:
        tensors["attention"] = output.attention
    return tensors


def generate_logits(model: SeqVAE, inputs: torch.Tensor, z_enc: torch.Tensor | None, mode: str,
                    seed: int) -> torch.Tensor:
    """Feed ``inputs`` to the decoder one step at a time (Algorithm 2's recursion); the logits of every step."""
    torch.manual_seed(seed)
    state = model.decoder.start(z_enc, inputs.size(0))
    logits = []
    for position in range(inputs.size(1)):
        step_logits, state = model.decoder.step(inputs[:, position], state, z_enc, mode)
        logits.append(step_logits)
    return torch.stack(logits, dim=1)


def sentence_latent(model: SeqVAE, batch: int) -> torch.Tensor | None:
    torch.manual_seed(11)
    return model.latent_prior.sample(batch).double() if model.encoder is not None else None


# -- every preset builds and trains ------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_builds_and_gives_a_finite_loss_with_gradients_everywhere(preset):
    assert preset in PRESET_TERMS, f"new preset {preset!r}: add its loss terms to PRESET_TERMS"
    model = small_model([preset], []).train()
    tokens = sentences([6, 4, 5], seed=1)
    terms = model(tokens, torch.tensor([6, 4, 5]))
    kl_names, aux_names = PRESET_TERMS[preset]
    assert tuple(terms.kl) == kl_names == model.kl_terms
    assert tuple(terms.aux) == aux_names
    for value in [terms.nll, terms.log_weight, *terms.kl.values(), *terms.aux.values()]:
        assert value.shape == (3,) and torch.all(torch.isfinite(value))
    assert torch.all(terms.nll > 0)
    assert preset in MONTE_CARLO_KL or all(torch.all(kl >= 0) for kl in terms.kl.values())
    assert terms.tokens.tolist() == [6, 4, 5] and terms.words.tolist() == [5, 3, 4]
    loss = model.objective(terms, {})
    assert torch.isfinite(loss)
    loss.backward()
    unreached = [name for name, parameter in model.named_parameters()
                 if parameter.grad is None or not torch.all(torch.isfinite(parameter.grad))]
    assert not unreached, f"parameters without a finite gradient: {unreached}"


@pytest.mark.parametrize("variant", [
    ["models.SeqVAE.latent_prior = @priors.mixture"],
    ["models.SeqVAE.regularizers = [@regularizers.word_dropout(), @regularizers.free_bits()]",
     "regularizers.word_dropout.rate = 0.5", "regularizers.free_bits.nats = 100.0"],
], ids=["mixture-prior", "word-dropout-and-free-bits"])
def test_variants_of_vrae_sa_aux_build_and_give_a_finite_loss(variant):
    model = small_model(["vrae_sa_aux"], variant).train()
    terms = model(sentences([5, 3], seed=2), torch.tensor([5, 3]))
    loss = model.objective(terms, {"z_enc": 0.5})
    assert torch.isfinite(loss)
    loss.backward()


def test_free_bits_floor_the_kl_in_the_objective_but_not_in_the_reported_terms():
    model = small_model(["vrae"], ["models.SeqVAE.regularizers = [@regularizers.free_bits()]",
                                   "regularizers.free_bits.nats = 100.0"])
    terms = model(sentences([5, 3], seed=2), torch.tensor([5, 3]))
    assert torch.all(terms.kl["z_enc"] < 100.0)
    torch.testing.assert_close(model.objective(terms, {"z_enc": 0.5}), terms.nll.mean() + 0.5 * 100.0)


def _paper_parameter_count(preset: str, vocab: int = 10002, embedding: int = 512, hidden: int = 256,
                           latent: int = 32) -> int:
    """The parameters sections 3 and 4.1 of the paper call for, counted from its equations at its sizes: one bias
    per LSTM gate, and eq. 4's additive score without a bias."""
    def linear(inputs: int, outputs: int, bias: bool = True) -> int:
        return inputs * outputs + (outputs if bias else 0)

    def lstm(inputs: int) -> int:  # four gates on [input, h_{t-1}], one bias each
        return 4 * hidden * (inputs + hidden) + 4 * hidden

    words, output = vocab * embedding, linear(hidden, vocab)  # x_t's embedding; p(x_{t+1} | h_t), eq. 17
    encoder = words + lstm(embedding) + linear(hidden, 2 * latent)  # s_t, eq. 5; q(z_enc | x) from s_T, eq. 12
    if preset == "lstm":
        return words + lstm(embedding) + output
    if preset == "vrae":
        return encoder + words + lstm(embedding + latent) + output
    decoder = (words + lstm(embedding + 3 * latent)  # h_t = LSTM([x_t, z_t, c~_t, z_enc], h_{t-1}), eq. 6
               + linear(hidden, 2 * latent)  # p(z_t | h_{t-1}), eq. 18
               + linear(2 * hidden, 2 * latent)  # q(z_t | h_{t-1}, c_t), eq. 11
               + linear(hidden, hidden, bias=False) * 2 + hidden  # W_a h_{t-1}, V_a s_i, w_a: eq. 4
               + linear(latent, 2 * latent)  # p(c~_t | z_t), eq. 19
               + output)
    return encoder + decoder


def _documented_extras(preset: str, hidden: int = 256) -> int:
    """What the presets add to the paper's equations, each one listed under "Small structural choices" in
    docs/models.md: a second bias in every LSTM (nn.LSTM's input and recurrent biases), and a bias on the attention
    query W_a h_{t-1}."""
    lstms = 1 if preset == "lstm" else 2
    return lstms * 4 * hidden + (hidden if preset.startswith("vrae_sa") else 0)


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_presets_have_the_papers_sizes_and_parameters_plus_only_the_documented_extras(preset):
    parse_config([preset])
    torch.manual_seed(0)
    model = build_model(vocab_size=10002, pad_id=PAD, bos_id=BOS, unk_id=UNK, eos_id=EOS)
    assert model.num_parameters() == _paper_parameter_count(preset) + _documented_extras(preset)
    assert model.decoder.embedding.weight.shape == (10002, 512) and model.decoder.hidden_size == 256
    assert model.decoder.input_dropout.p == 0.5
    if model.encoder is not None:
        assert model.encoder.embedding.weight.shape == (10002, 512) and model.encoder.state_size == 256
        assert model.encoder.latent_dim == 32
    if preset.startswith("vrae_sa"):
        assert model.decoder.latent_dim == 32 and model.decoder.context_prior.out_features == 2 * 32
    tokens = sentences([7, 4], seed=3)
    tokens = torch.where(tokens > UNK, tokens + 100, tokens)  # words beyond the small test vocabulary
    terms = model(tokens, torch.tensor([7, 4]))
    assert torch.isfinite(model.objective(terms, {}))


@pytest.mark.parametrize("preset", ["lstm", "vrae_sa_aux"])
def test_init_range_draws_every_parameter_uniformly_and_keeps_padding_rows_zero(preset):
    default = small_model([preset], [])
    assert max(p.abs().max().item() for p in default.parameters()) > 1.0  # PyTorch's own: embeddings N(0, 1)
    model = small_model([preset], ["models.SeqVAE.init_range = 0.1"])
    assert default.num_parameters() == model.num_parameters()
    for name, parameter in model.named_parameters():
        assert parameter.abs().max() <= 0.1, name
        if parameter.numel() >= 50:  # spread over the whole range, not left at another layer's scale
            assert parameter.abs().max() > 0.08 and parameter.abs().mean() > 0.03, name
    embeddings = [layer for layer in model.modules() if isinstance(layer, nn.Embedding)]
    assert embeddings and all(layer.weight[PAD].abs().max() == 0 for layer in embeddings)
    terms = model(sentences([5, 3], seed=1), torch.tensor([5, 3]))
    assert torch.isfinite(model.objective(terms, {}))


@pytest.mark.parametrize("value", ["0", "-0.1", "'x'", "True"])
def test_an_init_range_that_is_not_a_positive_number_is_refused(value):
    with pytest.raises(UserError, match="init_range is the half-width of the uniform initialization"):
        small_model(["vrae"], [f"models.SeqVAE.init_range = {value}"])


# -- no look-ahead -----------------------------------------------------------------------------------------------
def test_every_registered_decoder_is_covered_by_the_decoder_tests():
    covered = set()
    for name, (configs, bindings) in DECODER_SETUPS.items():
        if name != "gru-example":
            covered.add(type(small_model(configs, bindings).decoder).registry_name)
    assert covered == set(DECODERS.names()), "add the new decoder to DECODER_SETUPS"


@pytest.mark.parametrize("mode", LATENT_MODES)
def test_teacher_forcing_never_looks_ahead(decoder_model, mode):
    """With the encoder's memory, z_enc and the noise held fixed, changing the inputs from position t+1 on leaves
    every per-step output up to t unchanged (the posterior may read the whole sentence only through the memory)."""
    model, steps = decoder_model, 7
    inputs = decoder_inputs(2, steps, seed=4)
    lengths = torch.full((2,), steps)
    memory = model.encoder(inputs, lengths) if model.encoder is not None else None
    z_enc = memory.posterior.mean if memory is not None else None
    decoder_memory = memory if model.decoder.reads_memory else None

    def run(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        torch.manual_seed(5)
        output = model.decoder(tokens, lengths, z_enc, decoder_memory, mode, return_attention=True)
        return per_step_tensors(output, model.decoder.logits(output.hidden))

    reference = run(inputs)
    for position in (1, 3, steps - 1):
        changed = run(change_from(inputs, position))
        for name, value in reference.items():
            torch.testing.assert_close(changed[name][:, :position], value[:, :position], rtol=0, atol=1e-12,
                                       msg=f"{name} before position {position} changed")
        assert not torch.allclose(changed["logits"][:, position], reference["logits"][:, position])


@pytest.mark.parametrize("mode", ["prior_sample", "prior_mean"])
def test_generation_never_looks_ahead(decoder_model, mode):
    model, steps = decoder_model, 7
    inputs = decoder_inputs(2, steps, seed=6)
    z_enc = sentence_latent(model, 2)
    reference = generate_logits(model, inputs, z_enc, mode, seed=7)
    for position in (1, 3, steps - 1):
        changed = generate_logits(model, change_from(inputs, position), z_enc, mode, seed=7)
        torch.testing.assert_close(changed[:, :position], reference[:, :position], rtol=0, atol=1e-12)
        assert not torch.allclose(changed[:, position], reference[:, position])


def test_step_by_step_generation_scores_as_teacher_forcing(decoder_model):
    """With the per-step latents at their prior mean, feeding a sentence one step at a time gives the logits of
    the teacher-forced pass, which therefore needs no encoder either."""
    model = decoder_model
    inputs = decoder_inputs(3, 6, seed=8)
    z_enc = sentence_latent(model, 3)
    output = model.decoder(inputs, torch.full((3,), 6), z_enc, None, "prior_mean")
    torch.testing.assert_close(generate_logits(model, inputs, z_enc, "prior_mean", seed=0),
                               model.decoder.logits(output.hidden))


class EncoderThatMustNotRun(nn.Module):
    def forward(self, *args, **kwargs):
        raise AssertionError("generation read the encoder")


def test_generation_never_reads_the_encoder(decoder_model):
    """Algorithm 2: z_enc from the prior, then z_t from p(z_t | h_{t-1}) and c~_t predicted; no attention. The
    encoder is replaced by one that raises, and every decoder layer that reads the encoder's states (attention keys,
    the posterior's context half) is filled with NaN: one use of them would make the logits NaN."""
    model = decoder_model
    if model.encoder is not None:
        model.encoder = EncoderThatMustNotRun()
    readers = [layer for layer in model.decoder.modules()
               if isinstance(layer, nn.Linear) and layer.in_features == ENCODER_STATE]
    assert bool(readers) == model.decoder.reads_memory
    with torch.no_grad():
        for layer in readers:
            layer.weight.fill_(float("nan"))
    z_enc = sentence_latent(model, 4)
    for mode in ("prior_sample", "prior_mean"):
        torch.manual_seed(9)
        state = model.decoder.start(z_enc, 4)
        tokens = torch.full((4,), BOS)
        for _ in range(6):
            logits, state = model.decoder.step(tokens, state, z_enc, mode)
            assert logits.shape == (4, VOCAB) and torch.all(torch.isfinite(logits))
            tokens = logits.argmax(dim=-1)
    if model.decoder.per_step_latents:
        with pytest.raises(ValueError, match="generation draws z_t from the prior"):
            model.decoder.step(tokens, state, z_enc, "posterior")


# -- padding -----------------------------------------------------------------------------------------------------
class PositionalNoise:
    """Standard normal noise that depends on each element's position only, not on the tensor's shape: the k-th draw
    of a forward pass reads table k at the element's indices. Padding a batch more then leaves the noise of every
    real position as it was, so the model's samples can be compared across paddings."""

    def __init__(self, seed: int, draws: int = 8, size: int = 16):
        self.tables = torch.randn((draws, size, size, size), generator=torch.Generator().manual_seed(seed),
                                  dtype=torch.float64)
        self.draws = 0

    def sample(self, shape: torch.Size, dtype: torch.dtype | None) -> torch.Tensor:
        table = self.tables[self.draws]
        self.draws += 1
        assert len(shape) <= 3 and all(n <= table.size(0) for n in shape), f"noise table too small for {shape}"
        table = table[(0,) * (3 - len(shape))]
        return table[tuple(slice(0, n) for n in shape)].to(dtype or torch.get_default_dtype())

    @contextlib.contextmanager
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        self.draws = 0
        with monkeypatch.context() as patch:
            patch.setattr(torch.Tensor, "normal_", lambda tensor, mean=0.0, std=1.0, **_: tensor.copy_(
                self.sample(tensor.shape, tensor.dtype) * std + mean))
            patch.setattr(torch, "randn_like", lambda tensor, dtype=None, **_: self.sample(
                tensor.shape, dtype or tensor.dtype))
            patch.setattr(torch, "randn", lambda *size, dtype=None, **_: self.sample(
                torch.Size(size[0] if len(size) == 1 and not isinstance(size[0], int) else size), dtype))
            yield


def score(model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor, mode: str,
          noise: PositionalNoise, monkeypatch: pytest.MonkeyPatch) -> LossTerms:
    with noise.installed(monkeypatch), torch.no_grad():
        return model(tokens, lengths, mode, return_attention=True)


def assert_same_terms(actual: LossTerms, expected: LossTerms, rows: slice | list[int] = slice(None)) -> None:
    pairs = {"nll": (actual.nll, expected.nll[rows]), "log_weight": (actual.log_weight, expected.log_weight[rows]),
             "tokens": (actual.tokens, expected.tokens[rows]), "words": (actual.words, expected.words[rows])}
    assert actual.kl.keys() == expected.kl.keys() and actual.aux.keys() == expected.aux.keys()
    pairs |= {f"kl.{name}": (actual.kl[name], expected.kl[name][rows]) for name in expected.kl}
    pairs |= {f"aux.{name}": (actual.aux[name], expected.aux[name][rows]) for name in expected.aux}
    for name, (got, want) in pairs.items():
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10, msg=f"{name} changed")


def test_a_given_posterior_runs_the_encoder_only_for_a_decoder_that_reads_its_memory(decoder_model):
    """SVI refinement scores a batch at given posterior parameters dozens of times a step: the encoder runs only
    where the decoder attends over its states, and the scores are those of a run that encodes."""
    model = decoder_model.eval()
    if model.encoder is None:
        return
    tokens = torch.randint(4, VOCAB, (3, 6))
    tokens[:, -1] = EOS
    lengths = torch.full((3,), 6)
    posterior = model.encoder(tokens, lengths).posterior
    torch.manual_seed(0)
    expected = model(tokens, lengths, posterior=posterior)
    calls = []
    model.encoder.register_forward_hook(lambda *args: calls.append(1))
    torch.manual_seed(0)
    scored = model(tokens, lengths, posterior=posterior)
    assert len(calls) == int(model.decoder.reads_memory)
    torch.testing.assert_close(scored.nll, expected.nll)
    torch.testing.assert_close(scored.log_weight, expected.log_weight)


@pytest.mark.parametrize("mode", LATENT_MODES)
@pytest.mark.parametrize("setup", list(PADDING_SETUPS))
def test_padding_more_changes_no_loss_term(setup, mode, monkeypatch):
    model = small_model(*PADDING_SETUPS[setup])
    lengths = torch.tensor([3, 7, 5])  # unsorted, so that a term taken from the wrong row shows
    noise = PositionalNoise(seed=10)
    tight = score(model, sentences(lengths.tolist(), seed=12), lengths, mode, noise, monkeypatch)
    padded = score(model, sentences(lengths.tolist(), width=12, seed=12), lengths, mode, noise, monkeypatch)
    assert_same_terms(padded, tight)
    if mode.startswith("posterior") and setup == "vrae_sa_aux":
        assert "context_prediction" in padded.aux
    if padded.attention is not None:  # no attention on padded encoder positions; each step's weights sum to 1
        real = torch.arange(12)[None, None, :] < lengths[:, None, None]
        assert torch.all(padded.attention.masked_select(~real) == 0)
        torch.testing.assert_close(padded.attention.sum(-1), torch.ones(3, 12, dtype=torch.float64))
        torch.testing.assert_close(padded.attention[:, :7, :7], tight.attention)


@pytest.mark.parametrize("mode", LATENT_MODES)
def test_what_lies_beyond_a_sentences_length_is_never_read(mode, monkeypatch):
    """The lengths decide where a sentence ends, not the pad symbol: other words after the end change nothing."""
    model = small_model(["vrae_sa_aux"], [])
    lengths = torch.tensor([3, 7, 5])
    noise = PositionalNoise(seed=13)
    clean = score(model, sentences(lengths.tolist(), width=9, seed=14), lengths, mode, noise, monkeypatch)
    garbage = score(model, sentences(lengths.tolist(), width=9, seed=14, filler=UNK + 2), lengths, mode, noise,
                    monkeypatch)
    assert_same_terms(garbage, clean)


@pytest.mark.parametrize("setup", list(ALONE_SETUPS))
def test_each_sentence_scores_the_same_alone_as_in_a_padded_batch(setup):
    """Every latent at its posterior mean, nothing sampled: each row must equal the sentence scored on its own."""
    model = small_model(*ALONE_SETUPS[setup])
    lengths = [4, 8, 2, 6]
    batch = sentences(lengths, seed=15)
    with torch.no_grad():
        together = model(batch, torch.tensor(lengths), "posterior_mean")
        for row, length in enumerate(lengths):
            alone = model(batch[row:row + 1, :length], torch.tensor([length]), "posterior_mean")
            assert_same_terms(alone, together, rows=[row])


@pytest.mark.parametrize("mode", ["prior_mean", "prior_sample"])
def test_prior_modes_have_no_per_step_kl_and_no_auxiliary_term(mode):
    """In the paper's protocol the per-step latents come from their prior: nothing to pay for them, and the
    auxiliary term (which needs the attention context c_t) is not computed."""
    model = small_model(["vrae_sa_aux"], [])
    with torch.no_grad():
        terms = model(sentences([5, 3], seed=16), torch.tensor([5, 3]), mode)
    assert torch.all(terms.kl["z_t"] == 0) and torch.all(terms.kl["z_enc"] > 0) and terms.aux == {}


@pytest.mark.parametrize("preset", ["vrae", "vrae_sa_aux"])
def test_log_weight_is_an_unbiased_one_sample_elbo(preset):
    """-log w = NLL + log q(z|x) - log p(z) at the drawn latents: its mean over draws is the -ELBO with analytic KLs."""
    model = small_model([preset], [])
    copies = 4000
    tokens = sentences([6], seed=17).expand(copies, -1)
    torch.manual_seed(18)
    with torch.no_grad():
        terms = model(tokens, torch.full((copies,), 6))
    gap = -terms.log_weight - terms.neg_elbo
    assert abs(gap.mean().item()) < 4 * gap.std().item() / copies ** 0.5
    assert gap.std().item() > 0.01  # one-sample KL estimates do vary: the check above has something to find


# -- what a library caller may get wrong -------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["lstm", "vrae_sa_aux"])
@pytest.mark.parametrize("case, message", [
    ("no end-of-sentence", r"row 1 does not end in end-of-sentence: at column 2 \(its length 3, minus 1\) it holds "
                           r"\d+, not the end-of-sentence id 2\. .*its length counts that token"),
    ("lengths one short", r"row 0 does not end in end-of-sentence: at column 4 .* holds \d+, not"),
    ("lengths one long", r"row 1 does not end in end-of-sentence: at column 4 \(its length 5, minus 1\) it holds 0"),
    ("one length too few", r"lengths hold one length per row; got tokens of shape \(3, 6\) and lengths of shape "
                           r"\(2,\)"),
    ("lengths as a matrix", r"got tokens of shape \(3, 6\) and lengths of shape \(3, 1\)"),
    ("a word outside the vocabulary", rf"token ids must lie in \[0, {VOCAB}\), .* row 2 holds {VOCAB} at column 1: "
                                      "encode the sentences with the vocabulary the model was built for"),
    ("negative padding", r"row 1 holds -1 at column 5: .* pad with its pad id \(0\)"),
])
def test_a_batch_the_model_would_misread_is_refused_with_what_to_do(preset, case, message):
    """Scoring takes each row's token at lengths - 1 for its end-of-sentence (``words = lengths - 1``) and embeds
    every id of the row: a batch that breaks either is refused at the entry points, the model and the importance
    weights, before anything reads it."""
    model = small_model([preset], [])
    lengths = torch.tensor([6, 4, 5])
    tokens = sentences(lengths.tolist(), seed=19)
    if case == "no end-of-sentence":
        lengths[1] = 3
    elif case == "lengths one short":
        lengths[0] = 5
    elif case == "lengths one long":
        lengths[1] = 5
    elif case == "one length too few":
        lengths = lengths[:2]
    elif case == "lengths as a matrix":
        lengths = lengths[:, None]
    elif case == "a word outside the vocabulary":
        tokens[2, 1] = VOCAB
    else:
        tokens[1, 5] = -1  # past the end of row 1: padding, which the encoder embeds too
    for entry in (lambda: model(tokens, lengths),
                  lambda: importance_log_likelihood(model, tokens, lengths, 3, 2 ** 20)):
        with pytest.raises(BatchError, match=message):
            entry()
