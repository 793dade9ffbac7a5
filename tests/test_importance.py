"""The importance-weighted estimator held to a direct implementation of its definition,
log (1/K) sum_k p(x, z^k) / q(z^k | x), given the same draws: one sample at a time, one sentence row each, the
decoder's equations step by step, the densities from torch.distributions."""

import math

import pytest
import torch
import torch.nn.functional as F

from seqvae_zoo import build_model, parse_config
from seqvae_zoo.data.batching import collate
from seqvae_zoo.evaluation.importance import (BYTES_PER_TOKEN_PER_TYPE, importance_log_likelihood,
                                              importance_log_weights, rows_per_pass)

SMALL = ["EMBEDDING = 8", "HIDDEN = 12", "LATENT = 3", "INPUT_DROPOUT = 0.0", "encoders.lstm.hidden_size = 10",
         "decoders.attentive.attention_size = 6", "decoders.attentive.context_dim = 4"]
VOCAB_SIZE, PAD, BOS, UNK, EOS = 11, 0, 1, 3, 2

#: Every decoder kind, the vMF family (with its uniform prior on the sphere), and the other families and priors.
SETUPS = {
    "lstm": (["vrae"], []),
    "stochastic": (["vrae"], ["models.SeqVAE.decoder = @decoders.stochastic"]),
    "attentive": (["vrae_sa_aux"], []),
    "transformer": (["transformer_vae"], ["decoders.transformer.heads = 2", "decoders.transformer.dropout = 0.0"]),
    "vmf": (["vmf_vae"], ["latents.vmf.kappa = 5.0"]),
    "vamp": (["vamp_vae"], ["priors.vamp.components = 3", "priors.vamp.length = 6"]),
    "bn": (["bn_vae_06"], []),
    "delta": (["delta_vae"], []),
}


def model_for(setup: str):
    configs, bindings = SETUPS[setup]
    parse_config(configs, SMALL + bindings)
    torch.manual_seed(0)
    model = build_model(VOCAB_SIZE, PAD, BOS, UNK, EOS).double().eval()
    with torch.no_grad():  # latents that move p(x | z): weights that differ between samples
        for parameter in model.parameters():
            parameter.mul_(2.0)
    return model


def sentences() -> tuple[torch.Tensor, torch.Tensor]:
    rows = [[4, 5, 6, 7, 8, 2], [9, 2], [5, 5, 10, 2], [6, 7, 2], [10, 9, 8, 7, 2]]
    batch = collate(rows, PAD)
    return batch.tokens, batch.lengths


def gaussian(params: torch.Tensor) -> torch.distributions.Normal:
    mean, logvar = params.chunk(2, dim=-1)
    return torch.distributions.Normal(mean, torch.exp(0.5 * logvar))


def log_joint_over_proposal(model, tokens, lengths, memory, z_enc, noise) -> torch.Tensor:
    """log p(x | z) + sum_t [log p(z_t | h_{t-1}) - log q(z_t | h_{t-1}, e_t)] per sentence, the per-step latents
    z_t = mean + std * noise drawn step by step from q as the equations say; the decoder's own step interface for the
    decoders without them."""
    decoder = model.decoder
    batch, width = tokens.shape
    mask = torch.arange(width)[None, :] < lengths[:, None]
    inputs = model.decoder_inputs(tokens, mask)
    total = torch.zeros(batch, dtype=torch.float64)
    if not decoder.per_step_latents:
        state = decoder.start(z_enc, batch)
        for t in range(width):
            logits, state = decoder.step(inputs[:, t], state, z_enc)
            total += torch.log_softmax(logits, dim=-1).gather(1, tokens[:, t:t + 1])[:, 0] * mask[:, t]
        return total
    input_gates = decoder.input_projection(decoder.embedding(inputs)) + decoder.z_enc_projection(z_enc)[:, None]
    read = decoder.context_reader(memory)
    state = decoder.cell.initial_state(batch, decoder.output.weight)
    step_noise, extra_noise = noise
    for t in range(width):
        previous_hidden = state[0]
        context, _ = read(previous_hidden)
        posterior = gaussian(decoder.posterior(previous_hidden, context))
        prior = gaussian(decoder.prior(previous_hidden))
        z = posterior.mean + posterior.stddev * step_noise[t]
        extras = decoder.extra_latents(z, extra_noise[t] if extra_noise is not None else None)
        state = decoder.cell.step(input_gates[:, t] + decoder.latent_projection(torch.cat([z, *extras], dim=1)),
                                  F.linear(previous_hidden, decoder.recurrent.weight[:decoder.cell.gate_size],
                                           decoder.recurrent.bias[:decoder.cell.gate_size]), state)
        log_p_x = torch.log_softmax(decoder.logits(state[0]), dim=-1).gather(1, tokens[:, t:t + 1])[:, 0]
        step = log_p_x + prior.log_prob(z).sum(-1) - posterior.log_prob(z).sum(-1)
        total += step * mask[:, t]
    return total


def reference_log_weights(model, tokens, lengths, samples: int) -> torch.Tensor:
    """(B, samples): for k = 1..K, z_enc^k ~ q(z_enc | x) and the per-step noise from sample k's own stream (a seed
    per sample, from the caller's random state), then log p(z_enc^k) - log q(z_enc^k | x) + log p(x, z_t^k | z_enc^k)
    - log q(z_t^k | ...)."""
    seeds = torch.randint(2 ** 62, (samples,)).tolist()
    with torch.inference_mode():
        memory = model.encoder(tokens, lengths)
        columns = []
        for seed in seeds:
            torch.manual_seed(seed)
            z_enc = memory.posterior.rsample()
            noise = None
            if model.decoder.per_step_latents:
                noise = model.decoder._draw_noise(tokens.size(1), tokens.size(0), model.decoder.output.weight)
            log_weight = model.latent_prior.log_prob(z_enc) - memory.posterior.log_prob(z_enc)
            columns.append(log_weight + log_joint_over_proposal(model, tokens, lengths, memory, z_enc, noise))
    return torch.stack(columns, dim=1)


@pytest.mark.parametrize("setup", list(SETUPS))
def test_the_fast_estimate_equals_the_definition_computed_sample_by_sample(setup):
    model = model_for(setup)
    tokens, lengths = sentences()
    samples = 6
    with torch.random.fork_rng():
        torch.manual_seed(5)
        fast = importance_log_weights(model, tokens, lengths, samples, 2 ** 30)
        torch.manual_seed(5)
        reference = reference_log_weights(model, tokens, lengths, samples)
    torch.testing.assert_close(fast, reference, rtol=1e-9, atol=1e-9)
    assert (reference.std(dim=1) > 1e-3).all()  # the samples differ: the draws matter
    with torch.random.fork_rng():
        torch.manual_seed(5)
        estimate = importance_log_likelihood(model, tokens, lengths, samples, 2 ** 30)
    expected = torch.logsumexp(reference, dim=1) - math.log(samples)
    torch.testing.assert_close(estimate, expected, rtol=1e-9, atol=1e-9)
    assert (estimate >= reference.mean(dim=1)).all()  # log-mean-exp over the one-sample bounds' mean: IW >= ELBO


@pytest.mark.parametrize("setup", ["attentive", "vmf"])
def test_the_estimate_does_not_depend_on_how_rows_are_grouped_into_passes(setup):
    """Same seed, memory budgets from one row per pass (each sentence and sample alone) to everything at once: the
    same weights, to float32 rounding."""
    model = model_for(setup).float()
    tokens, lengths = sentences()
    samples = 7
    row_bytes = int(lengths.max()) * model.vocab_size * BYTES_PER_TOKEN_PER_TYPE
    # one row per pass (each sentence and sample alone); 3 (sentences split); 12 (all sentences, 2 samples); all
    budgets = [1, 3 * row_bytes, 12 * row_bytes, 2 ** 30]
    assert [rows_per_pass(model, int(lengths.max()), budget) for budget in budgets[:3]] == [1, 3, 12]
    results = []
    for budget in budgets:
        with torch.random.fork_rng():
            torch.manual_seed(9)
            results.append(importance_log_weights(model, tokens, lengths, samples, budget))
    for other in results[1:]:
        torch.testing.assert_close(other, results[0])
    assert results[0].shape == (5, samples)
