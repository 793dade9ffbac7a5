"""Per-sentence SVI refinement of the posterior (Kim et al. 2018, "Semi-amortized variational autoencoders")."""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable

import torch

from seqvae_zoo.latents.base import LatentDistribution
from seqvae_zoo.latents.gaussian import GaussianFamily
from seqvae_zoo.model import LossTerms, SeqVAE
from seqvae_zoo.registry import PROCEDURES
from seqvae_zoo.training.procedures.base import Procedure, ProcedureError, check_setting, require_encoder


def one_process(value: Any) -> list[Any]:
    """The values of every process where there is one: this one's."""
    return [value]


def refine_posterior(model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor, posterior: LatentDistribution,
                     weights: dict[str, float], steps: int, lr: float, momentum: float, max_grad_norm: float,
                     share: float = 1.0, all_gather: Callable[[Any], list[Any]] = one_process
                     ) -> LatentDistribution:
    """The posterior's parameters after ``steps`` steps of SGD with momentum on the batch's training objective
    (the mean over sentences of NLL + weighted KL), starting from ``posterior``, each parameter tensor's gradient
    over the whole batch clipped to norm ``max_grad_norm``: Kim et al.'s settings. The model's parameters get no
    gradient. Each sentence's parameters follow its own -ELBO's gradient over the batch size: a step of ``lr`` on
    each sentence's own -ELBO overshoots once the decoder is steep in z, leaving the log-variance far below the
    encoder's. Where several processes share the batch, ``share`` is this process's fraction of its sentences and
    ``all_gather`` collects a value from every process, so that they refine as one process with the whole batch."""
    parameters = [value.detach().clone().requires_grad_() for value in posterior]
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=momentum)
    with torch.enable_grad():
        for _ in range(steps):
            loss = share * model.objective(model(tokens, lengths, posterior=type(posterior)(*parameters)), weights)
            grads = torch.autograd.grad(loss, parameters)
            squares = all_gather([grad.pow(2).sum().item() for grad in grads])
            for parameter, grad, *process_squares in zip(parameters, grads, *squares):
                parameter.grad = grad * min(1.0, max_grad_norm / (math.sqrt(sum(process_squares)) + 1e-6))
            optimizer.step()
    return type(posterior)(*(parameter.detach() for parameter in parameters))


@PROCEDURES.register("svi")
class SVIRefinement(Procedure):
    """Kim et al.'s semi-amortized training: the encoder's posterior refined by SVI for each sentence.

    Each batch: the encoder's q(z|x) as the start, ``steps`` steps of SGD with momentum on the batch's objective
    with respect to the posterior's parameters only, each step's gradient clipped to norm ``max_grad_norm`` (Kim et
    al.'s text settings: 20 steps, lr 1, momentum 0.5, clipping at 5, the loss a mean over sentences with the KL at
    the annealed weight), then one step of the model: the decoder (and prior) on the objective at the refined
    posterior, the encoder toward the refined parameters by KL(q_encoder || q_refined).

    This is the cheaper variant, with the gradient stopped at the refined parameters (Kim et al.'s code with
    ``train_n2n 0, train_kl 1``), not the paper's backpropagation through the refinement. The epoch's train columns
    are those of the refined posterior; validation scores the encoder's posterior unrefined.
    """

    def __init__(self, steps: int = 20, lr: float = 1.0, momentum: float = 0.5, max_grad_norm: float = 5.0):
        check_setting("svi", "steps", steps, True, lambda v: v >= 1, ">= 1")
        check_setting("svi", "lr", lr, False, lambda v: v > 0, "> 0")
        check_setting("svi", "momentum", momentum, False, lambda v: 0 <= v < 1, "in [0, 1)")
        check_setting("svi", "max_grad_norm", max_grad_norm, False, lambda v: v > 0, "> 0")
        self.steps, self.lr, self.momentum, self.max_grad_norm = steps, lr, momentum, max_grad_norm

    def bind(self, trainer) -> None:
        require_encoder(self, trainer)
        family = trainer.model.encoder.family
        if not isinstance(family, GaussianFamily):
            raise ProcedureError(f"procedure 'svi' refines the posterior's parameters by unconstrained gradient steps, "
                                 f"which suits the Gaussian family only; this encoder's family is "
                                 f"{type(family).registry_name!r} (a fixed concentration or a unit-norm direction "
                                 "would leave its family): use encoders.lstm.family = 'gaussian', or another procedure")

    def train_step(self, trainer, batch) -> None:
        share = batch.loss_scale / trainer.distributed.world_size  # this process's sentences over the batch's
        trainer.update(batch, loss=partial(self.loss, share=share, all_gather=trainer.distributed.all_gather))

    def loss(self, model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor, weights: dict[str, float],
             share: float = 1.0, all_gather: Callable[[Any], list[Any]] = one_process
             ) -> tuple[torch.Tensor, LossTerms]:
        initial = model.encoder(tokens, lengths).posterior
        refined = refine_posterior(model, tokens, lengths, initial, weights, self.steps, self.lr, self.momentum,
                                   self.max_grad_norm, share, all_gather)
        terms = model(tokens, lengths, posterior=refined)
        return model.objective(terms, weights) + initial.kl(refined).mean(), terms
