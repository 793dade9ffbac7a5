"""Mixed precision: bfloat16 products in a training step's forward and backward passes, float32 everywhere else.

A training step in ``"bf16"`` runs its forward pass under ``torch.autocast(dtype=torch.bfloat16)`` (CPU or CUDA), so
torch's own products (``nn.Linear``, ``nn.LSTM``, ``bmm``) take bfloat16 operands; the kernels of this package follow
the same switch (:func:`follows_autocast`). Parameters, their gradients and Adam's state stay float32 (the master
weights), and so do the loss and its reductions, the KL terms and log-densities (a distribution's parameters are
float32, :func:`seqvae_zoo.gaussian.split_params`), the log-softmax / cross-entropy and gradient clipping. Scoring
outside a training step (validation, evaluation) never enters autocast: the metrics are float32 whatever the
training precision.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable

import torch

from seqvae_zoo.errors import UserError

#: Training precisions: float32 throughout, or bfloat16 products with float32 master weights.
PRECISIONS = ("fp32", "bf16")


class PrecisionError(UserError, ValueError):
    """A training precision that is unknown, unsupported by the device, or not the one a checkpoint was trained in."""


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 products natively: AVX512-BF16 or AMX on a CPU (as oneDNN reports it), a
    bfloat16-capable GPU. Elsewhere torch emulates them, several times slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return False


def check_precision(precision: str, device: torch.device | str,
                    supported: Callable[[torch.device], bool] | None = None) -> None:
    """Refuse an unknown ``precision``, or ``"bf16"`` on a device without native bfloat16 products (``supported``,
    :func:`bf16_supported` by default): training would run, only slower than in float32."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"training.TrainingSettings.precision must be one of {', '.join(map(repr, PRECISIONS))}, "
                             f"not {precision!r}")
    device = torch.device(device)
    if precision == "bf16" and not (supported or bf16_supported)(device):
        what = "this processor has no AVX512-BF16 or AMX instructions" if device.type == "cpu" else \
            f"device {device} has no native bfloat16 arithmetic"
        raise PrecisionError(f"precision 'bf16' needs native bfloat16 products and {what}, so bfloat16 would run "
                             "slower than float32: train in float32 (--precision fp32, or "
                             "training.TrainingSettings.precision = \"fp32\", the default)")


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The context a training step's forward pass runs in: bfloat16 autocast on ``device`` for ``"bf16"``, nothing
    for ``"fp32"``."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


#: Floating dtypes narrower than float32, which a kernel's state never holds.
LOW_PRECISION = (torch.bfloat16, torch.float16)


def full_precision(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32 if it is in a lower precision (the output of a product under autocast), else itself
    (float64 stays float64)."""
    return tensor.float() if tensor.dtype in LOW_PRECISION else tensor


def follows_autocast(forward: Callable) -> Callable:
    """For a kernel's ``autograd.Function.forward(ctx, ...)``: cast its lower-precision tensor arguments to float32
    (the kernel's state, nonlinearities and accumulations stay float32), set ``ctx.product_dtype`` to the dtype its
    products are to run in (autocast's for the device of its tensors when autocast is on, else its first floating
    argument's) and run it with autocast off, so that only the products the kernel casts itself run in the lower
    precision. The backward pass reads ``ctx.product_dtype``: its products match the forward's."""

    @functools.wraps(forward)
    def run(ctx, *args):
        args = tuple(full_precision(arg) if isinstance(arg, torch.Tensor) else arg for arg in args)
        tensors = [arg for arg in args if isinstance(arg, torch.Tensor) and arg.is_floating_point()]
        device = tensors[0].device.type
        ctx.product_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else tensors[0].dtype
        with torch.autocast(device, enabled=False):
            return forward(ctx, *args)

    return run
