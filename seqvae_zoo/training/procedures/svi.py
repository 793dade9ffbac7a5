"""Per-sentence SVI refinement of the posterior (Kim et al. 2018, "Semi-amortized variational autoencoders")."""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from seqvae_zoo.encoders.base import EncoderOutput
from seqvae_zoo.latents.base import LatentDistribution
from seqvae_zoo.latents.gaussian import GaussianFamily
from seqvae_zoo.model import LossTerms, SeqVAE
from seqvae_zoo.registry import PROCEDURES
from seqvae_zoo.schedules.base import EVERY_KL_TERM
from seqvae_zoo.training.procedures.base import (Procedure, ProcedureError, check_setting, held_fixed,
                                                   require_encoder)


def one_process(value: Any) -> list[Any]:
    """The values of every process where there is one: this one's."""
    return [value]


@dataclass
class Trajectory:
    """A refinement's course: the posterior's parameters before each step and after the last, each step's clipping
    factors and noise seed, and (where kept) each step's gradient in the posterior's parameters then the model's."""

    points: list[list[torch.Tensor]]
    scales: list[list[float]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    gradients: list[list[torch.Tensor | None]] = field(default_factory=list)


@dataclass
class Refinement:
    """What the refinement of one batch steps on: the batch's objective as a function of the posterior's
    parameters, and the settings of SGD with momentum over them (Kim et al.'s). Where several processes share the
    batch, ``share`` is this process's fraction of its sentences and ``all_gather`` collects a value from every
    process, so that they refine as one process with the whole batch."""

    model: SeqVAE
    tokens: torch.Tensor
    lengths: torch.Tensor
    family: type[LatentDistribution]
    weights: dict[str, float]
    steps: int
    lr: float
    momentum: float
    max_grad_norm: float
    share: float = 1.0
    all_gather: Callable[[Any], list[Any]] = one_process

    def loss(self, parameters: Sequence[torch.Tensor], seed: int) -> torch.Tensor:
        """The objective at the posterior ``parameters``, its noise and dropout drawn from ``seed`` (so that a
        later evaluation at the same step draws the same), the global random state left as it was."""
        devices = [self.tokens.device] if self.tokens.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return self.share * self.model.objective(
                self.model(self.tokens, self.lengths, posterior=self.family(*parameters)), self.weights)

    def clip_scales(self, grads: Sequence[torch.Tensor]) -> list[float]:
        """The factor that brings each parameter tensor's gradient over the whole batch to norm ``max_grad_norm``
        at most."""
        squares = self.all_gather([grad.pow(2).sum().item() for grad in grads])
        return [min(1.0, self.max_grad_norm / (math.sqrt(sum(process_squares)) + 1e-6))
                for process_squares in zip(*squares)]

    def run(self, start: Sequence[torch.Tensor], parameters: Sequence[torch.Tensor] = ()) -> Trajectory:
        """``steps`` steps of SGD with momentum (torch's: buffer = momentum * buffer + gradient, parameters -= lr *
        buffer) on the clipped gradients, from ``start``. The model's parameters get no gradient. With
        ``parameters`` (the model's), each step's gradient is taken in them too, in float32, and kept: the one-sided
        difference of the way back subtracts it (:func:`hessian_vector_products`)."""
        point = [value.detach() for value in start]
        buffers: list[torch.Tensor] | None = None
        trajectory = Trajectory([point])
        keeping = bool(parameters)
        for _ in range(self.steps):
            seed = int(torch.randint(2**62, (1,)))
            with torch.enable_grad(), held_fixed(() if keeping else self.model.parameters()), \
                    (torch.autocast(point[0].device.type, enabled=False) if keeping else nullcontext()):
                leaves = [value.detach().requires_grad_() for value in point]
                grads = torch.autograd.grad(self.loss(leaves, seed), [*leaves, *parameters], allow_unused=True)
            if keeping:
                trajectory.gradients.append(list(grads))
            grads = grads[:len(leaves)]
            step_scales = self.clip_scales(grads)
            grads = [grad * scale for grad, scale in zip(grads, step_scales)]
            buffers = grads if buffers is None else [self.momentum * b + g for b, g in zip(buffers, grads)]
            point = [value - self.lr * buffer for value, buffer in zip(point, buffers)]
            trajectory.points.append(point)
            trajectory.scales.append(step_scales)
            trajectory.seeds.append(seed)
        return trajectory


def refine_posterior(model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor, posterior: LatentDistribution,
                     weights: dict[str, float], steps: int, lr: float, momentum: float, max_grad_norm: float,
                     share: float = 1.0, all_gather: Callable[[Any], list[Any]] = one_process,
                     end_to_end: bool = False, hvp_step: float = 1e-3, hvp_difference: str = "one-sided"
                     ) -> LatentDistribution:
    """The posterior's parameters after ``steps`` steps of SGD with momentum on the batch's training objective
    (the mean over sentences of NLL + weighted KL), starting from ``posterior``, each parameter tensor's gradient
    over the whole batch clipped to norm ``max_grad_norm``: Kim et al.'s settings. Each sentence's parameters
    follow its own -ELBO's gradient over the batch size: a step of ``lr`` on each sentence's own -ELBO overshoots
    once the decoder is steep in z, leaving the log-variance far below the encoder's.

    Without ``end_to_end`` the result is detached: the model's parameters get no gradient through it. With it,
    the backward pass runs back through the steps (:class:`ThroughRefinement`, its Hessian-vector products by the
    ``hvp_difference`` of :data:`HVP_DIFFERENCES`), into ``posterior`` and the model's parameters."""
    refinement = Refinement(model, tokens, lengths, type(posterior), weights, steps, lr, momentum, max_grad_norm,
                            share, all_gather)
    if not end_to_end:
        return refinement.family(*refinement.run(tuple(posterior)).points[-1])
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    refined = ThroughRefinement.apply(refinement, hvp_step, hvp_difference, len(posterior), *posterior, *parameters)
    return refinement.family(*refined)


#: The finite differences of the Hessian-vector products on the way back (:class:`ThroughRefinement`).
HVP_DIFFERENCES = ("one-sided", "central")


class ThroughRefinement(torch.autograd.Function):
    """The refined posterior parameters as a differentiable function of the starting ones and of the model's
    parameters: Kim et al.'s backpropagation through the SGD steps (their "SA-VAE", train_n2n 1).

    The backward pass walks the steps in reverse. Step k's gradient g_k = c_k * grad L(lambda_k; theta) (c_k its
    clipping factor, held fixed) passes the adjoint a on as c_k times the Hessian-vector products H_lambda_lambda a
    (into lambda_k) and H_theta_lambda a (into the model's parameters). Each product is a finite difference of the
    gradient g along a, with the step's own noise and dropout drawn again, r chosen so the largest entry of r a is
    ``hvp_step``: only first derivatives are needed, so every decoder and kernel can take part.

    ``hvp_difference`` "one-sided" (Kim et al.'s form; they take r = 1e-5 and clip the adjoints to norm 5):
    (g(lambda + r a) - g(lambda)) / r, g(lambda) the gradient the refinement's step took, which the steps then take
    in the model's parameters too and keep (steps times the model's size, in float32): one gradient per step on the
    way back. The steps run in float32 even under autocast, as the products do, since the difference subtracts
    them. "central": (g(lambda + r a) - g(lambda - r a)) / 2r, its error second order in r: two gradients per step
    on the way back, nothing kept."""

    @staticmethod
    def forward(ctx, refinement: Refinement, hvp_step: float, hvp_difference: str, count: int,
                *inputs: torch.Tensor):
        parameters = inputs[count:]
        trajectory = refinement.run(inputs[:count], parameters if hvp_difference == "one-sided" else ())
        refined = trajectory.points.pop()  # the outputs: held by ctx, they would hold ctx, a cycle gc cannot free
        ctx.refinement, ctx.hvp_step, ctx.trajectory, ctx.parameters = refinement, hvp_step, trajectory, parameters
        return tuple(refined)

    @staticmethod
    def backward(ctx, *grad_refined: torch.Tensor):
        refinement, trajectory = ctx.refinement, ctx.trajectory
        ctx.trajectory = None  # the graph may outlive the backward pass: the kept gradients need not
        adjoint = [torch.zeros_like(value) if grad is None else grad
                   for value, grad in zip(trajectory.points[0], grad_refined)]
        buffer_adjoint = [torch.zeros_like(value) for value in adjoint]
        parameter_grads: list[torch.Tensor | None] = [None] * len(ctx.parameters)
        for k in reversed(range(refinement.steps)):
            buffer_adjoint = [b - refinement.lr * a for b, a in zip(buffer_adjoint, adjoint)]
            direction = [b * scale for b, scale in zip(buffer_adjoint, trajectory.scales[k])]
            input_products, parameter_products = hessian_vector_products(
                refinement, trajectory.points[k], trajectory.seeds[k], direction, ctx.parameters, ctx.hvp_step,
                trajectory.gradients[k] if trajectory.gradients else None)
            adjoint = [a + product for a, product in zip(adjoint, input_products)]
            parameter_grads = [grad if product is None else product if grad is None else grad + product
                               for grad, product in zip(parameter_grads, parameter_products)]
            buffer_adjoint = [refinement.momentum * b for b in buffer_adjoint]
        return (None, None, None, None, *adjoint, *parameter_grads)


def hessian_vector_products(refinement: Refinement, point: Sequence[torch.Tensor], seed: int,
                            direction: Sequence[torch.Tensor], parameters: Sequence[torch.Tensor], hvp_step: float,
                            gradient: Sequence[torch.Tensor | None] | None = None
                            ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """H v for v = ``direction`` at the posterior parameters ``point``, in the rows of the posterior's parameters
    and of the model's ``parameters`` (None where the objective does not read one), in float32 even when training
    runs under autocast: a one-sided difference from ``gradient``, the gradient at ``point`` in those rows, where
    it is given, else a central difference."""
    largest = max(float(v.abs().max()) for v in direction)
    if largest == 0.0:
        return [torch.zeros_like(v) for v in direction], [None] * len(parameters)
    r = hvp_step / largest

    def gradient_at(sign: float) -> list[torch.Tensor | None]:
        with torch.enable_grad(), torch.autocast(point[0].device.type, enabled=False):
            leaves = [(value + sign * r * v).detach().requires_grad_() for value, v in zip(point, direction)]
            return list(torch.autograd.grad(refinement.loss(leaves, seed), [*leaves, *parameters], allow_unused=True))

    if gradient is None:
        products = [None if plus is None else (plus - minus) / (2 * r)
                    for plus, minus in zip(gradient_at(1.0), gradient_at(-1.0))]
    else:
        products = [None if plus is None else (plus - at) / r for plus, at in zip(gradient_at(1.0), gradient)]
    return products[:len(point)], products[len(point):]


@PROCEDURES.register("svi")
class SVIRefinement(Procedure):
    """Kim et al.'s semi-amortized training: the encoder's posterior refined by SVI for each sentence.

    Each batch: the encoder's q(z|x) as the start, ``steps`` steps of SGD with momentum on the batch's objective
    with respect to the posterior's parameters only, each step's gradient clipped to norm ``max_grad_norm`` (Kim et
    al.'s text settings: 20 steps, lr 1, momentum 0.5, clipping at 5, the loss a mean over sentences with the KL at
    the annealed weight), then one step of the model on the objective at the refined posterior.

    ``end_to_end`` (the paper's SA-VAE, Kim et al.'s code with ``train_n2n 1``): that step's gradient runs back
    through the refinement, into the encoder and, by the refinement's dependence on them, the decoder's
    parameters (:class:`ThroughRefinement`; a batch costs about two times the refinement's gradient evaluations
    with ``hvp_difference`` one-sided, Kim et al.'s, three times with central). Without it (their ``train_n2n 0,
    train_kl 1``): the gradient stops at the refined parameters, the decoder learns at them and the encoder moves
    toward them by KL(q_encoder || q_refined). The epoch's train columns are those of the refined posterior;
    validation scores the encoder's posterior unrefined, evaluation the refined one, as Kim et al. report their
    models (:meth:`scoring`).
    """

    def __init__(self, steps: int = 20, lr: float = 1.0, momentum: float = 0.5, max_grad_norm: float = 5.0,
                 end_to_end: bool = True, hvp_step: float = 1e-3, hvp_difference: str = "one-sided"):
        check_setting("svi", "steps", steps, True, lambda v: v >= 1, ">= 1")
        check_setting("svi", "lr", lr, False, lambda v: v > 0, "> 0")
        check_setting("svi", "momentum", momentum, False, lambda v: 0 <= v < 1, "in [0, 1)")
        check_setting("svi", "max_grad_norm", max_grad_norm, False, lambda v: v > 0, "> 0")
        check_setting("svi", "hvp_step", hvp_step, False, lambda v: 0 < v < 1, "in (0, 1)")
        if not isinstance(end_to_end, bool):
            raise ProcedureError(f"procedures.svi.end_to_end must be True (backpropagate through the refinement) or "
                                 f"False (stop the gradient at the refined posterior); got {end_to_end!r}")
        self.steps, self.lr, self.momentum, self.max_grad_norm = steps, lr, momentum, max_grad_norm
        if hvp_difference not in HVP_DIFFERENCES:
            choices = ", ".join(map(repr, HVP_DIFFERENCES))
            raise ProcedureError(f"procedures.svi.hvp_difference must be one of {choices} (the finite difference "
                                 f"of the Hessian-vector products on the way back); got {hvp_difference!r}")
        self.end_to_end, self.hvp_step, self.hvp_difference = end_to_end, hvp_step, hvp_difference

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
                                   self.max_grad_norm, share, all_gather, self.end_to_end, self.hvp_step,
                                   self.hvp_difference)
        terms = model(tokens, lengths, posterior=refined)
        if self.end_to_end:
            return model.objective(terms, weights), terms
        return model.objective(terms, weights) + initial.kl(refined).mean(), terms

    @contextmanager
    def scoring(self, model: SeqVAE) -> Iterator[str]:
        """Within the block, the model's posterior is the encoder's refined as in training, at KL weight 1
        (:class:`RefiningEncoder`): the model Kim et al. evaluate."""
        encoder = model.encoder
        model.encoder = RefiningEncoder(model, encoder, self)
        try:
            yield (f"the encoder's posterior refined by {self.steps} steps of SGD (lr {self.lr}, momentum "
                   f"{self.momentum}, each step's gradient clipped to norm {self.max_grad_norm}) on each batch's "
                   "-ELBO, as in training")
        finally:
            model.encoder = encoder


class RefiningEncoder(nn.Module):
    """Stands in for a model's encoder in evaluation: the encoder's output with its posterior refined by the
    procedure's steps on the batch's -ELBO (KL weight 1, the model as it is, in eval mode). The refinement's noise
    comes from a fixed seed, so a batch's posterior does not depend on what was scored before it (an IW pass
    resumed half-way gives the same numbers); the last batch's output is kept, since the protocol reads a batch's
    posterior several times."""

    def __init__(self, model: SeqVAE, encoder: nn.Module, procedure: SVIRefinement, seed: int = 0):
        super().__init__()
        self.encoder, self.procedure, self.seed = encoder, procedure, seed
        self._model = [model]  # not a submodule: the model holds this one
        self._last: tuple[torch.Tensor, torch.Tensor, EncoderOutput] | None = None

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        if self._last is not None and _same(self._last[0], tokens) and _same(self._last[1], lengths):
            return self._last[2]
        output = self.encoder(tokens, lengths)
        model, procedure = self._model[0], self.procedure
        devices = [tokens.device] if tokens.device.type == "cuda" else []
        # the evaluation may run in inference mode, whose tensors autograd cannot use: the refinement works on copies
        with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            model.encoder = self.encoder  # the refinement scores the batch through the model, with its own encoder
            try:
                start = type(output.posterior)(*(value.clone() for value in output.posterior))
                refined = refine_posterior(model, tokens.clone(), lengths.clone(), start, {EVERY_KL_TERM: 1.0},
                                           procedure.steps, procedure.lr, procedure.momentum, procedure.max_grad_norm)
            finally:
                model.encoder = self
        output = EncoderOutput(*output[:3], refined)
        self._last = (tokens, lengths, output)
        return output


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.device == b.device and bool(torch.equal(a, b))
