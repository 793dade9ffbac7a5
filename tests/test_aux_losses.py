"""The context-prediction term: bounded in its preset form, its target detached when asked. Its learned-variance
form, the paper's density -log N(c_t P; f_c(z_t)), is held to a step-by-step reference in
tests/test_fast_path.py::test_fast_path_gives_the_reference_terms_and_gradients (setup vrae_sa_aux)."""

import math

import torch

from seqvae_zoo import build_model, parse_config

SMALL = ["EMBEDDING = 8", "HIDDEN = 8", "LATENT = 4", "INPUT_DROPOUT = 0.0"]


def small_model(*bindings):
    parse_config(["vrae_sa_aux"], [*SMALL, *bindings])
    torch.manual_seed(0)
    return build_model(vocab_size=20, pad_id=0, bos_id=1, unk_id=3, eos_id=2)


def batch():
    tokens = torch.tensor([[5, 6, 7, 2], [8, 2, 0, 0]])
    return tokens, torch.tensor([4, 2])


def test_unit_variance_term_is_bounded_below_by_the_gaussian_constant():
    model = small_model()
    terms = model(*batch())
    steps = torch.tensor([4.0, 2.0])
    floor = steps * 0.5 * 4 * math.log(2 * math.pi)  # context_dim = LATENT = 4
    assert torch.all(terms.aux["context_prediction"] >= floor - 1e-5)


def test_detached_target_gets_no_gradient_from_the_term():
    from seqvae_zoo.aux_losses.context_prediction import ContextPredictionLoss
    from seqvae_zoo.decoders.base import DecoderOutput
    from seqvae_zoo.gaussian import DiagGaussian

    for detach in (True, False):
        target = torch.randn(2, 3, 4, requires_grad=True)
        prior = DiagGaussian(torch.zeros(2, 3, 4, requires_grad=True), torch.zeros(2, 3, 4))
        output = DecoderOutput(hidden=torch.zeros(2, 3, 1),
                               extras={"context_target": target, "context_prior": prior})
        loss = ContextPredictionLoss(detach_target=detach, unit_variance=True, name="context_prediction")
        loss(output, torch.ones(2, 3)).sum().backward()
        assert (target.grad is None) == detach
        assert prior.mean.grad is not None and prior.mean.grad.abs().sum() > 0
