"""Float32 matrix products on a CPU through oneDNN, where PyTorch has it.

``torch.mm`` on a CPU calls MKL, whose float32 kernels run on AMD processors at well under what the processor does:
on the 2-core AVX-512 AMD EPYC this package is benchmarked on, a 2048 x 2048 product runs at about 180 GFLOP/s with
MKL and about 400 with oneDNN; on an AVX2 EPYC the two are about level, 115 and 120 (``benchmarks/throughput.py``
measures both). PyTorch reaches oneDNN's float32 matmul for plain
tensors only through the linear operator of its compiler's CPU backend, ``torch.ops.mkldnn._linear_pointwise``, an
internal operator; so it is used only where it exists and gives what ``torch.nn.functional.linear`` gives on a probe
(and ``SEQVAE_ONEDNN_MATMUL=0`` turns it off), and only for products large enough to pay its fixed cost per call.
Other dtypes, other devices, small products and a torch without it get torch's own products. Either way the result
is the float32 product, to float32 rounding.

Under bfloat16 autocast (:mod:`seqvae_zoo.kernels.precision`) the kernels hand :func:`linear` bfloat16 weights: the
product then runs in bfloat16 (torch's own, oneDNN's on a CPU, which accumulates in float32) and comes back in the
inputs' dtype, so the float32 state around it stays float32.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from seqvae_zoo.errors import UserError
from seqvae_zoo.kernels.precision import follows_autocast


@functools.cache
def onednn_linear_available() -> bool:
    """Whether oneDNN's float32 linear operator exists here, is not turned off (``SEQVAE_ONEDNN_MATMUL=0``) and
    agrees with ``F.linear`` on a probe. The probe runs outside autocast: the first call may come from a bfloat16
    training step, where ``F.linear`` would give a bfloat16 answer to compare with."""
    switch = os.environ.get("SEQVAE_ONEDNN_MATMUL", "1")
    if switch not in ("0", "1"):
        raise UserError(f"SEQVAE_ONEDNN_MATMUL must be 0 (torch's own products) or 1 (oneDNN where it is "
                        f"available, the default), not {switch!r}: set it to one of those or unset it")
    if switch == "0" or not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    inputs, weight, bias = (torch.randn(shape, generator=generator) for shape in ((5, 24), (7, 24), (7,)))
    with torch.autocast("cpu", enabled=False):
        try:
            got = torch.ops.mkldnn._linear_pointwise(inputs.t().contiguous().t(), weight, bias, "none", [], "")
        except (AttributeError, RuntimeError):  # no such operator in this torch, or it refuses these tensors
            return False
        return got.shape == (5, 7) and torch.allclose(got, F.linear(inputs, weight, bias), rtol=1e-5, atol=1e-5)


#: Multiply-adds below which a product stays with torch: oneDNN's fixed cost per call is larger than MKL's, and below
#: about 2 million multiply-adds (32 x 256 x 256, say) MKL is the faster on the machine benchmarked here.
ONEDNN_MIN_MACS = 2 ** 21


def _takes_onednn(inputs: torch.Tensor, weight: torch.Tensor) -> bool:
    return (inputs.device.type == "cpu" and inputs.dtype == torch.float32 and weight.dtype == torch.float32
            and inputs.size(0) * inputs.size(1) * weight.size(0) >= ONEDNN_MIN_MACS and onednn_linear_available())


#: oneDNN compiles a kernel for each shape it meets and keeps a bounded number of them: the products whose row count
#: follows the batch's token count are padded to a multiple of this many rows, so that a few dozen shapes serve a
#: whole corpus instead of a new compilation at almost every batch.
ROW_MULTIPLE = 64


def zero_padded(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """``tensor`` with zero rows appended up to ``rows`` rows (``tensor`` itself when it has them)."""
    missing = rows - tensor.size(0)
    return torch.cat([tensor, tensor.new_zeros(missing, *tensor.shape[1:])]) if missing else tensor


def padded_row_count(rows: int) -> int:
    """``rows`` rounded up to a multiple of :data:`ROW_MULTIPLE`."""
    return rows + -rows % ROW_MULTIPLE


def pad_rows(rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``rows`` (N, in) with zero rows appended up to a multiple of :data:`ROW_MULTIPLE` where the product with
    ``weight`` goes to oneDNN; ``rows`` itself otherwise."""
    if not _takes_onednn(rows, weight):
        return rows
    return zero_padded(rows, padded_row_count(rows.size(0)))


def linear(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """(N, in) inputs @ weight^T + bias, as ``F.linear``, without autograd (for backward passes written by hand),
    into ``out`` if given. ``inputs`` and ``weight`` may be transposed views. The product runs in ``weight``'s dtype
    (``inputs`` and ``bias`` cast to it: bfloat16 weights make a bfloat16 product, the bias added before its one
    rounding) and the result comes back in ``inputs``' dtype."""
    if inputs.dtype != weight.dtype:
        product = linear(inputs.to(weight.dtype), weight, bias.to(weight.dtype) if bias is not None else None)
        return product.to(inputs.dtype) if out is None else out.copy_(product)
    if _takes_onednn(inputs, weight):
        product = torch.ops.mkldnn._linear_pointwise(inputs, weight, bias, "none", [], "")
        return product if out is None else out.copy_(product)
    if out is None:
        return F.linear(inputs, weight, bias)
    if bias is None:
        return torch.mm(inputs, weight.t(), out=out)
    return torch.addmm(bias, inputs, weight.t(), out=out)


def product_into(out: torch.Tensor, inputs: torch.Tensor, other: torch.Tensor, add: bool = False) -> torch.Tensor:
    """``out`` = inputs @ other (``out`` += with ``add``) through torch's own product, in ``other``'s dtype
    (``inputs`` cast to it), ``out`` keeping its own: the latent heads' per-step products, too small for oneDNN."""
    if inputs.dtype == other.dtype == out.dtype:
        return out.addmm_(inputs, other) if add else torch.mm(inputs, other, out=out)
    result = torch.mm(inputs.to(other.dtype), other)
    return out.add_(result) if add else out.copy_(result)


def rows_inner_product(left: torch.Tensor, right: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """left^T right for (N, p) ``left`` and (N, q) ``right``: a weight gradient, summed over N rows, without autograd;
    the product in ``dtype`` when given (bfloat16 under autocast, the operands cast to it), the result in the
    narrower operand's dtype.

    Through :func:`linear` with the narrower operand's transpose as its input and the wider one's as its weight:
    oneDNN copies an input given transposed but reads a transposed weight as it lies, so the narrower operand is the
    one copied (the wider one is the (N, 10,002) softmax block of the output layer, say). The wider one is made
    contiguous first if it is not: oneDNN runs a transposed view of a strided tensor (the gate columns of a wider
    block, say) at a small fraction of its rate. Contiguous (p, q). The row count is the inner dimension: where it
    follows the batch, the caller pads it (zero rows in both) to :func:`padded_row_count`.
    """
    narrower, wider = (left, right) if left.size(1) <= right.size(1) else (right, left)
    product = linear(narrower.t(), wider.contiguous().to(dtype or wider.dtype).t())
    return product if narrower is left else product.t().contiguous()


class _Linear(torch.autograd.Function):
    """:func:`linear` with its gradients, each one product through :func:`linear` as well (bfloat16 products under
    autocast, the weight cast once; float32 results)."""

    @staticmethod
    @follows_autocast
    def forward(ctx, inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        padded = pad_rows(inputs, weight)
        weight = weight.to(ctx.product_dtype)
        ctx.save_for_backward(padded, weight)
        return linear(padded, weight, bias)[:inputs.size(0)]

    @staticmethod
    @once_differentiable
    def backward(ctx, d_outputs: torch.Tensor):
        padded, weight = ctx.saved_tensors
        needs_inputs, needs_weight, needs_bias = ctx.needs_input_grad
        rows = d_outputs.size(0)
        d_padded = zero_padded(d_outputs, padded.size(0))
        return (linear(d_padded, weight.t())[:rows] if needs_inputs else None,
                rows_inner_product(d_padded, padded, ctx.product_dtype) if needs_weight else None,
                d_outputs.sum(0) if needs_bias else None)


def linear_layer(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` of (N, in) inputs, with autograd; on a CPU in float32 the forward and both gradients go through
    oneDNN (where torch has it), elsewhere this is ``F.linear`` itself."""
    if _takes_onednn(inputs, weight):
        return _Linear.apply(inputs, weight, bias)
    return F.linear(inputs, weight, bias)
