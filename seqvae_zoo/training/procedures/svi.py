"""Per-sentence SVI refinement of the posterior (Kim et al. 2018, "Semi-amortized variational autoencoders")."""

from __future__ import annotations

import torch

from seqvae_zoo.latents.base import LatentDistribution
from seqvae_zoo.latents.gaussian import GaussianFamily
from seqvae_zoo.model import LossTerms, SeqVAE
from seqvae_zoo.registry import PROCEDURES
from seqvae_zoo.training.procedures.base import Procedure, ProcedureError, check_setting, require_encoder


def refine_posterior(model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor, posterior: LatentDistribution,
                     steps: int, lr: float, momentum: float) -> LatentDistribution:
    """The posterior's parameters after ``steps`` steps of SGD with momentum on each sentence's -ELBO, starting
    from ``posterior``; the model's parameters get no gradient. The batch's -ELBO is the sum of the sentences', so
    each sentence's parameters follow the gradient of its own -ELBO."""
    parameters = [value.detach().clone().requires_grad_() for value in posterior]
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=momentum)
    with torch.enable_grad():
        for _ in range(steps):
            neg_elbo = model(tokens, lengths, posterior=type(posterior)(*parameters)).neg_elbo.sum()
            for parameter, grad in zip(parameters, torch.autograd.grad(neg_elbo, parameters)):
                parameter.grad = grad
            optimizer.step()
    return type(posterior)(*(parameter.detach() for parameter in parameters))


@PROCEDURES.register("svi")
class SVIRefinement(Procedure):
    """Kim et al.'s semi-amortized training: the encoder's posterior refined by SVI for each sentence.

    Each batch: the encoder's q(z|x) as the start, ``steps`` steps of SGD with momentum on each sentence's
    -ELBO with respect to the posterior's parameters only (Kim et al.'s text settings: 20 steps, lr 1, momentum
    0.5), then one step of the model: the decoder (and prior) on the objective at the refined posterior, the encoder
    toward the refined parameters by KL(q_encoder || q_refined).

    This is the cheaper variant, with the gradient stopped at the refined parameters (Kim et al.'s code with
    ``train_n2n 0, train_kl 1``), not the paper's backpropagation through the refinement. The epoch's train columns
    are those of the refined posterior; validation scores the encoder's posterior unrefined.
    """

    def __init__(self, steps: int = 20, lr: float = 1.0, momentum: float = 0.5):
        check_setting("svi", "steps", steps, True, lambda v: v >= 1, ">= 1")
        check_setting("svi", "lr", lr, False, lambda v: v > 0, "> 0")
        check_setting("svi", "momentum", momentum, False, lambda v: 0 <= v < 1, "in [0, 1)")
        self.steps, self.lr, self.momentum = steps, lr, momentum

    def bind(self, trainer) -> None:
        require_encoder(self, trainer)
        family = trainer.model.encoder.family
        if not isinstance(family, GaussianFamily):
            raise ProcedureError(f"procedure 'svi' refines the posterior's parameters by unconstrained gradient steps, "
                                 f"which suits the Gaussian family only; this encoder's family is "
                                 f"{type(family).registry_name!r} (a fixed concentration or a unit-norm direction "
                                 "would leave its family): use encoders.lstm.family = 'gaussian', or another procedure")

    def train_step(self, trainer, batch) -> None:
        trainer.update(batch, loss=self.loss)

    def loss(self, model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor,
             weights: dict[str, float]) -> tuple[torch.Tensor, LossTerms]:
        initial = model.encoder(tokens, lengths).posterior
        refined = refine_posterior(model, tokens, lengths, initial, self.steps, self.lr, self.momentum)
        terms = model(tokens, lengths, posterior=refined)
        return model.objective(terms, weights) + initial.kl(refined).mean(), terms
