"""The output layer and its softmax cross-entropy, fused: p(x_{t+1} | h_t) = softmax(W h_t + b) scored at the
next token, the largest single cost of a training step (a (tokens, vocabulary) block)."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from seqvae_zoo.kernels.matmul import ROW_MULTIPLE, linear, pad_rows, rows_inner_product, zero_padded
from seqvae_zoo.kernels.precision import follows_autocast


#: Elements of a block of rows whose float32 softmax a bfloat16 training step computes at once: small enough that
#: the block stays in cache from the logits to the bfloat16 P - Y. 128 rows of a 10,002-word vocabulary, as fast as
#: 256 and faster than 64 or 512 at the paper's shapes (``python benchmarks/output_layer.py``; benchmarks/README.md).
CONVERTED_BLOCK_ELEMENTS = 3 * 2 ** 19

#: Elements of the (rows, vocabulary) logits block the fused output layer computes at once when no backward pass
#: keeps them: scoring many importance samples stays within memory, and each block is large enough for the matmul to
#: run at full speed.
OUTPUT_BLOCK_ELEMENTS = 7 * 2 ** 20


def converted_block_rows(vocabulary: int) -> int:
    """Rows per block of :data:`CONVERTED_BLOCK_ELEMENTS`, a multiple of :data:`ROW_MULTIPLE` (at least one)."""
    rows = CONVERTED_BLOCK_ELEMENTS // vocabulary
    return max(ROW_MULTIPLE, rows - rows % ROW_MULTIPLE)


class _LinearCrossEntropy(torch.autograd.Function):
    """-log softmax(hidden weight^T + bias)[target] per row.

    Exactly the softmax cross-entropy of the linear layer; what it saves is memory traffic and time. Its three matrix
    products run through :func:`seqvae_zoo.kernels.matmul.linear` (oneDNN on a CPU). For a backward pass the forward
    computes the softmax in place over the logits and turns it into d logits = P - Y (one write per row), which it
    keeps: one exponential per logit in all (log-softmax, then exp in the backward, takes two, and the exponential is
    the costliest elementwise work of a training step). The loss is -log of the target's probability read off the
    softmax, with no pass over the block beyond the softmax's own; a row whose target probability is below the dtype's
    normal range, where it has lost precision or is 0, is recomputed from its logits (log-sum-exp minus the target's
    logit). The backward folds the per-row gradient g into the (N, H) side of the products, so the (N, V) block is read
    only by two products: d hidden = g ((P - Y) W), and [d weight | d bias]^T = [g hidden | g]^T (P - Y), which reads
    the block as it lies (its transpose, which the other order of that product needs, costs a copy as long as a
    product), and gives d weight^T contiguous, the layout of the decoders' weight parameter
    (:class:`seqvae_zoo.decoders.base.OutputLayer`). The rows are padded as :func:`seqvae_zoo.kernels.matmul.pad_rows`
    says (their gradient weight is 0). Without a backward pass the rows go through in blocks of
    ``OUTPUT_BLOCK_ELEMENTS``.

    Under bfloat16 autocast the three products take bfloat16 operands (the weight cast once) and the logits come
    back bfloat16; the softmax, its logarithm, the loss and P_t - 1 are float32 (the softmax of 10,000 words sums
    many small probabilities, which bfloat16's 8 bits of mantissa would round away), and P - Y is rounded once to
    bfloat16 for both backward products. That runs over blocks of :func:`converted_block_rows` rows, each in cache
    from its logits to its P - Y.
    """

    @staticmethod
    @follows_autocast
    def forward(ctx, keep: bool, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
        weight = weight.to(ctx.product_dtype)
        if not keep:
            nll = hidden.new_empty(hidden.size(0))
            block = max(1, OUTPUT_BLOCK_ELEMENTS // weight.size(0))
            if block >= ROW_MULTIPLE:  # whole blocks need no padding; only the last one may
                block -= block % ROW_MULTIPLE
            for start in range(0, hidden.size(0), block):
                rows = slice(start, start + block)
                block_hidden = hidden[rows]
                logits = linear(pad_rows(block_hidden, weight), weight, bias)[:block_hidden.size(0)]
                torch.gather(torch.log_softmax(logits, dim=1, out=logits), 1, targets[rows, None],
                             out=nll[rows, None]).neg_()
            return nll
        rows = hidden.size(0)
        hidden = pad_rows(hidden, weight)  # zero rows: their gradient weight below is 0
        targets = zero_padded(targets, hidden.size(0))
        product_hidden, product_bias = hidden.to(weight.dtype), bias.to(weight.dtype)
        nll = hidden.new_empty(hidden.size(0))
        # P - Y, the backward's input, formed here in the products' dtype. In float32 the softmax runs in place over
        # the logits of all rows at once. From bfloat16 logits it runs in float32 over blocks of rows small enough to
        # stay in cache until rounded into the bfloat16 P - Y (one pass over the whole block instead of three), each
        # block converted into the same float32 buffer
        in_place = weight.dtype == hidden.dtype
        block = hidden.size(0) if in_place else converted_block_rows(weight.size(0))
        d_logits = None if in_place else hidden.new_empty(hidden.size(0), weight.size(0), dtype=weight.dtype)
        converted = None if in_place else hidden.new_empty(min(block, hidden.size(0)), weight.size(0))  # each block's
        underflowed = []
        for start in range(0, hidden.size(0), block):
            part = slice(start, start + block)
            logits = linear(product_hidden[part], weight, product_bias)
            probs = logits if in_place else converted[:logits.size(0)].copy_(logits)
            torch.softmax(probs, dim=1, out=probs)
            target_probs = probs.gather(1, targets[part, None])
            torch.log(target_probs[:, 0], out=nll[part]).neg_()
            # below the dtype's normal range the probability has lost precision (or is 0): those rows, rare, are
            # recomputed from their logits below
            underflowed.append((target_probs[:, 0] < torch.finfo(probs.dtype).tiny).nonzero()[:, 0] + start)
            probs.scatter_(1, targets[part, None], target_probs.sub_(1))  # P_t - 1 in float32, rounded once
            if in_place:
                d_logits = probs
            else:
                d_logits[part] = probs
        underflowed = torch.cat(underflowed)
        if underflowed.numel():
            row_logits = linear(hidden[underflowed], weight, bias)
            nll[underflowed] = (torch.logsumexp(row_logits, dim=1)
                                - row_logits.gather(1, targets[underflowed, None])[:, 0])
        ctx.d_logits = d_logits
        ctx.save_for_backward(hidden, weight)
        return nll[:rows]

    @staticmethod
    @once_differentiable
    def backward(ctx, d_nll: torch.Tensor):
        hidden, weight = ctx.saved_tensors
        d_logits, ctx.d_logits = ctx.d_logits, None
        rows = d_nll.size(0)
        d_nll = zero_padded(d_nll, hidden.size(0))
        _, needs_hidden, needs_weight, needs_bias, _ = ctx.needs_input_grad
        d_hidden = linear(d_logits, weight.t())[:rows].to(hidden.dtype).mul_(d_nll[:rows, None]) if needs_hidden \
            else None
        if not (needs_weight or needs_bias):  # a frozen layer (an encoder-only step): half the backward's products
            return None, d_hidden, None, None, None
        scaled = torch.cat([hidden * d_nll[:, None], d_nll[:, None]], dim=1)
        d_weight_and_bias = rows_inner_product(scaled, d_logits, ctx.product_dtype)  # (H + 1, V)
        # d weight as the transpose of a contiguous (H, V) block: the layout of a weight held as its transpose (the
        # decoders' OutputLayer); autograd copies it into any other
        d_weight, d_bias = d_weight_and_bias[:-1].t(), d_weight_and_bias[-1]
        return None, d_hidden, d_weight if needs_weight else None, d_bias if needs_bias else None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         targets: torch.Tensor) -> torch.Tensor:
    """(N,) -log softmax(hidden weight^T + bias)[targets]: the output layer and its cross-entropy, fused."""
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in (hidden, weight, bias))
    return _LinearCrossEntropy.apply(keep, hidden, weight, bias, targets)
