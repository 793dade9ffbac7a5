"""The packed LSTM recurrence that the stochastic decoders run (a latent at every step rules out a fused library
LSTM), with its hand-written backward pass, and the interface of the latent heads that run inside it.

The recurrence is where those decoders' time goes, so it is built for speed without changing the mathematics (the
equations are in :mod:`seqvae_zoo.decoders`; tests/test_fast_path.py holds this to them):

- the sentences are sorted by length and laid out time-major without padding (:class:`PackedLayout`, the order of
  torch's PackedSequence): step t runs only the sentences that are still going, so padded steps cost nothing;
- whatever does not depend on h_{t-1} is computed for all steps at once before the loop (the input projection of
  every token, z_enc's projection) and whatever only reads the states is computed after it (the output layer, the
  per-step prior);
- the loop is one autograd node (:class:`PackedLSTM`) with a hand-written backward: each step runs its matmuls and
  elementwise updates in place, into buffers allocated once per batch, so no per-step autograd graph, no per-step
  allocation and no stacking afterwards; the weight gradients of all steps are one large matmul each, after the loop;
- the per-step products on h_{t-1} and on the incoming gradient go through :func:`seqvae_zoo.kernels.matmul.linear`
  (oneDNN on a CPU, where MKL's float32 kernels are slow on AMD processors);
- under bfloat16 autocast (:mod:`seqvae_zoo.kernels.precision`) the products take bfloat16 operands, the weights cast
  once per batch, while the states h_t and c_t, the gates' nonlinearities and every sum over steps stay float32: a
  cell state kept in bfloat16 would round away the small updates of a long sentence (8 bits of mantissa), and the
  products, which accumulate in float32 inside oneDNN, are where the time goes.

Gates are laid out (output, input, forget, cell).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from seqvae_zoo.errors import LengthsError
from seqvae_zoo.kernels.matmul import linear, padded_row_count, rows_inner_product, zero_padded
from seqvae_zoo.kernels.precision import follows_autocast


@dataclass(frozen=True)
class PackedLayout:
    """Where the real tokens of a padded (B, T) batch go when the sentences are sorted by decreasing length and laid
    out time-major without padding: step t holds the packed rows ``offsets[t]:offsets[t] + batch_sizes[t]``, which
    belong to the ``batch_sizes[t]`` longest sentences (ranks 0, 1, ...; ``order[rank]`` is the batch row)."""

    order: torch.Tensor  # (B,) batch row of each rank, longest sentence first (ties keep batch order)
    batch_sizes: list[int]  # sentences still running at each step
    offsets: list[int]  # first packed row of each step
    width: int  # T, the padded batch's number of columns
    sentence: torch.Tensor  # (N,) each packed row's batch row
    padded_index: torch.Tensor  # (N,) its position in the flattened (B * T) batch
    time_major_index: torch.Tensor  # (N,) its position in a flattened (T * B) time-major tensor
    rank: torch.Tensor  # (N,) the rank of its sentence
    rank_index: torch.Tensor  # (N,) its position in a flattened (B * steps) tensor in rank order
    previous: torch.Tensor  # (N,) the row holding its step t-1 in [initial state (B ranks); packed rows (N)]

    @classmethod
    def from_lengths(cls, lengths: torch.Tensor, width: int) -> "PackedLayout":
        batch = lengths.numel()
        sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
        host_lengths = sorted_lengths.tolist()  # the one device-to-host copy of a batch
        if batch == 0 or host_lengths[-1] < 1 or host_lengths[0] > width:
            raise LengthsError(lengths.tolist(), width)
        counts = [0] * host_lengths[0]
        for length in host_lengths:
            counts[length - 1] += 1
        batch_sizes, running = [], 0
        for count in reversed(counts):  # sentences longer than t: those of length t + 1 and more
            running += count
            batch_sizes.append(running)
        batch_sizes.reverse()
        offsets = [0]
        for size in batch_sizes[:-1]:
            offsets.append(offsets[-1] + size)
        device = lengths.device
        sizes = torch.tensor(batch_sizes, device=device)
        step = torch.repeat_interleave(torch.arange(len(batch_sizes), device=device), sizes)
        starts = torch.tensor(offsets, device=device)
        rank = torch.arange(step.numel(), device=device) - starts[step]
        sentence = order[rank]
        previous = torch.where(step > 0, batch + starts[(step - 1).clamp(min=0)] + rank, rank)
        return cls(order, batch_sizes, offsets, width, sentence, sentence * width + step, step * batch + sentence,
                   rank, rank * len(batch_sizes) + step, previous)

    @property
    def batch_size(self) -> int:
        return self.order.numel()

    @property
    def num_rows(self) -> int:
        return self.rank.numel()

    @property
    def num_steps(self) -> int:
        return len(self.batch_sizes)

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) -> (N, ...): the real positions, in packed order."""
        return padded.reshape(-1, *padded.shape[2:]).index_select(0, self.padded_index)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (B, T, ...), zero at padded positions."""
        padded = packed.new_zeros(self.batch_size * self.width, *packed.shape[1:])
        return padded.index_copy(0, self.padded_index, packed).view(self.batch_size, self.width, *packed.shape[1:])

    def by_rank(self, packed: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (B, steps, ...) in rank order, zero where a sentence has ended."""
        padded = packed.new_zeros(self.batch_size * self.num_steps, *packed.shape[1:])
        return padded.index_copy_(0, self.rank_index, packed).view(self.batch_size, self.num_steps,
                                                                   *packed.shape[1:])

    def from_rank(self, by_rank: torch.Tensor) -> torch.Tensor:
        """(B, steps, ...) in rank order -> (N, ...) in packed order: the inverse of :meth:`by_rank`."""
        return by_rank.reshape(-1, *by_rank.shape[2:]).index_select(0, self.rank_index)

    def with_previous(self, initial: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        """(N, ...) the value each packed row's step reads from the step before: ``initial`` (B ranks) at t = 0."""
        return torch.cat([initial, packed]).index_select(0, self.previous)


def step_blocks(tensor: torch.Tensor | None, layout: PackedLayout) -> list[torch.Tensor | None]:
    """Views of a packed (N, ...) tensor, one per step, made before the loop (one call, not one per step); for
    None, Nones."""
    return list(tensor.split(layout.batch_sizes)) if tensor is not None else [None] * layout.num_steps


class StepRows:
    """A per-row quantity of the recurrence: kept for all packed rows (N, ...) when the backward pass reads it,
    otherwise one reused (B, ...) scratch tensor, so that scoring without gradients stays small. ``blocks`` holds the
    rows of each step."""

    def __init__(self, like: torch.Tensor, layout: PackedLayout, keep: bool, *shape: int):
        self.layout, self.keep = layout, keep
        self.tensor = like.new_empty(layout.num_rows if keep else layout.batch_size, *shape)
        self.blocks = self.step_views(self.tensor)

    def step_views(self, view: torch.Tensor) -> list[torch.Tensor]:
        """Each step's rows of ``view``, a view of ``tensor`` (some of its columns, say)."""
        return step_blocks(view, self.layout) if self.keep else [view[:n] for n in self.layout.batch_sizes]


class LatentHead:
    """What a stochastic decoder adds to the packed recurrence at every step: it reads ``width`` columns of the
    recurrent projection of h_{t-1} (after the 4H gate columns), draws the step's latents and adds their
    contribution to the gate pre-activations; in the backward pass it does the reverse.

    ``inputs`` are the tensors whose gradients :meth:`input_grads` gives, in that order (None where absent);
    :meth:`take_outputs` hands over per-row results (N, ...) for the decoder, and :meth:`begin_backward` receives
    them back with their gradients (None: unused). Steps are numbered t = 0, 1, ...; the head prepares its per-step
    views of the recurrence's buffers before each loop, so that a step costs no Python work beyond its arithmetic.
    """

    width: int
    inputs: tuple[torch.Tensor | None, ...]
    non_differentiable_outputs: int = 0  # how many of the last outputs carry no gradient

    def begin_forward(self, layout: PackedLayout, keep: bool, projected: StepRows, gates: StepRows,
                      product_dtype: torch.dtype) -> None:
        """Before the loop: ``projected`` will hold each step's recurrent projection (the head's columns after the
        4H gate columns), ``gates`` the gate pre-activations the head adds to; the head's products into the gates run
        in ``product_dtype`` (float32 state, :mod:`seqvae_zoo.kernels.precision`)."""
        raise NotImplementedError

    def forward_step(self, t: int) -> None:
        raise NotImplementedError

    def take_outputs(self) -> tuple[torch.Tensor, ...]:
        """After the loop: the outputs, with every reference the head holds to them (or to views of them) dropped.
        The autograd graph keeps the head for the backward pass, and the outputs keep the graph: a reference back
        would make a cycle that holds a whole batch's memory until the garbage collector runs."""
        raise NotImplementedError

    def begin_backward(self, outputs: tuple[torch.Tensor, ...], output_grads: tuple[torch.Tensor | None, ...],
                       d_projected: torch.Tensor) -> None:
        """Before the loop: the outputs again and their gradients; ``d_projected`` (N, 4H + width) will hold the
        gradient of each row's recurrent projection: the loop fills a step's gate columns before calling
        :meth:`backward_step`, which fills the head's columns."""
        raise NotImplementedError

    def backward_step(self, t: int) -> None:
        raise NotImplementedError

    def input_grads(self) -> tuple[torch.Tensor | None, ...]:
        """After the loop: the gradients of ``inputs``."""
        raise NotImplementedError


class PackedLSTM(torch.autograd.Function):
    """h_t, c_t = LSTM(gate_inputs_t + weight h_{t-1} + bias [+ the head's latent input]) over a packed batch.

    ``gate_inputs`` (N, 4H) hold everything the gates receive that does not depend on the recurrence; ``weight``
    (4H + head.width, H) and ``bias`` project h_{t-1} onto the gates and the head's columns; ``initial_h`` and
    ``initial_c`` (B, H) are the states before the first step, in rank order. Returns the hidden and cell states of
    every packed row (N, H) and the head's outputs. Gates are laid out (output, input, forget, cell): one sigmoid
    covers the first three, and in the backward pass the three that the cell's gradient scales are adjacent.
    Under bfloat16 autocast the products with ``weight`` (h_{t-1}'s, the incoming gradient's, the weight gradient)
    take bfloat16 operands; everything else is float32.
    """

    @staticmethod
    @follows_autocast
    def forward(ctx, layout: PackedLayout, head: LatentHead | None, keep: bool, gate_inputs: torch.Tensor,
                weight: torch.Tensor, bias: torch.Tensor, initial_h: torch.Tensor, initial_c: torch.Tensor,
                *head_inputs: torch.Tensor | None):
        size = weight.size(1)
        gates = 4 * size
        hidden = gate_inputs.new_empty(layout.num_rows, size)
        cells = gate_inputs.new_empty(layout.num_rows, size)
        projected = StepRows(gate_inputs, layout, keep, weight.size(0))
        activations = StepRows(gate_inputs, layout, keep, gates)
        tanh_cells = StepRows(gate_inputs, layout, keep, size)
        if head is not None:
            head.begin_forward(layout, keep, projected, activations, ctx.product_dtype)
        product_weight, product_bias = weight.to(ctx.product_dtype), bias.to(ctx.product_dtype)  # once per batch
        steps = zip(step_blocks(gate_inputs, layout), projected.blocks,
                    projected.step_views(projected.tensor[:, :gates]), activations.blocks,
                    *(activations.step_views(activations.tensor[:, start:start + columns])
                      for start, columns in ((0, 3 * size), (0, size), (size, size), (2 * size, size),
                                             (3 * size, size))),
                    tanh_cells.blocks, step_blocks(cells, layout), step_blocks(hidden, layout))
        h, c = initial_h, initial_c
        for t, (step_inputs, step_projected, step_gates, act, sigmoids, output_gate, input_gate, forget_gate,
                candidate, tanh_c, c_out, h_out) in enumerate(steps):
            n = step_inputs.size(0)
            if n < h.size(0):
                h, c = h[:n], c[:n]
            linear(h, product_weight, product_bias, out=step_projected)
            torch.add(step_inputs, step_gates, out=act)
            if head is not None:
                head.forward_step(t)
            sigmoids.sigmoid_()
            candidate.tanh_()
            c = torch.mul(forget_gate, c, out=c_out).addcmul_(input_gate, candidate)
            h = torch.mul(output_gate, torch.tanh(c, out=tanh_c), out=h_out)
        head_outputs = head.take_outputs() if head is not None else ()
        if keep:
            ctx.layout, ctx.head, ctx.product_weight = layout, head, product_weight
            ctx.activations, ctx.tanh_cells = activations.tensor, tanh_cells.tensor
            ctx.save_for_backward(weight, initial_h, initial_c, hidden, cells, *head_outputs)
        ctx.set_materialize_grads(False)
        if head is not None and head.non_differentiable_outputs:
            ctx.mark_non_differentiable(*head_outputs[-head.non_differentiable_outputs:])
        return (hidden, cells, *head_outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hidden, d_cells, *d_head_outputs):
        layout, head = ctx.layout, ctx.head
        weight, initial_h, initial_c, hidden, cells, *head_outputs = ctx.saved_tensors
        activations, tanh_cells = ctx.activations, ctx.tanh_cells
        size = weight.size(1)
        gates = 4 * size
        # zero rows up to seqvae_zoo.kernels.matmul.ROW_MULTIPLE: the inner dimension of the weight gradient's product
        rows = layout.num_rows
        padded_d_projected = weight.new_empty(padded_row_count(rows), weight.size(0))
        padded_d_projected[rows:].zero_()
        d_projected = padded_d_projected[:rows]
        d_gates = d_projected[:, :gates]
        # Everything of the cell's backward that does not depend on the incoming gradient, for all rows at once:
        # each gate's derivative times what the gradient of h_t (output gate) or c_t (the others) is scaled by.
        output_gate, input_gate, forget_gate, candidate = activations.split(size, dim=1)
        sigmoids = activations[:, :3 * size]
        torch.addcmul(sigmoids, sigmoids, sigmoids, value=-1, out=d_gates[:, :3 * size])  # s (1 - s)
        torch.mul(candidate, candidate, out=d_gates[:, 3 * size:]).neg_().add_(1)  # 1 - tanh^2
        for columns, factor in zip(d_gates.split(size, dim=1),
                                   (tanh_cells, candidate, layout.with_previous(initial_c, cells), input_gate)):
            columns.mul_(factor)
        cell_from_hidden = torch.mul(tanh_cells, tanh_cells).neg_().add_(1).mul_(output_gate)  # dc_t / dh_t
        weight_t = ctx.product_weight.t()
        dh = weight.new_zeros(layout.batch_size, size)  # the gradient reaching h_{t-1} of each rank from step t on
        dc = weight.new_zeros(layout.batch_size, size)
        if head is not None:
            head.begin_backward(tuple(head_outputs), d_head_outputs, d_projected)
        steps = list(zip(step_blocks(d_projected, layout), step_blocks(d_gates[:, :size], layout),
                         step_blocks(d_gates[:, size:].unflatten(1, (3, size)), layout),
                         step_blocks(d_hidden, layout), step_blocks(d_cells, layout),
                         step_blocks(cell_from_hidden, layout), step_blocks(forget_gate, layout),
                         [dh[:n] for n in layout.batch_sizes], [dc[:n] for n in layout.batch_sizes],
                         [dc[:n, None, :] for n in layout.batch_sizes]))
        for t in reversed(range(layout.num_steps)):
            (d_step, d_output, d_others, d_h_out, d_c_out, step_cell_from_hidden, step_forget, dh_t, dc_t,
             dc_per_gate) = steps[t]
            if d_h_out is not None:
                dh_t.add_(d_h_out)
            if d_c_out is not None:
                dc_t.add_(d_c_out)
            dc_t.addcmul_(dh_t, step_cell_from_hidden)
            d_output.mul_(dh_t)
            d_others.mul_(dc_per_gate)
            dc_t.mul_(step_forget)
            if head is not None:
                head.backward_step(t)
            linear(d_step, weight_t, out=dh_t)
        head_grads = head.input_grads() if head is not None else ()
        ctx.head = ctx.activations = ctx.tanh_cells = ctx.product_weight = None  # the graph may outlive the backward
        needs_weight, needs_bias = ctx.needs_input_grad[4:6]  # not for a frozen recurrence (an encoder-only step)
        d_weight = None
        if needs_weight:
            previous_hidden = zero_padded(layout.with_previous(initial_h, hidden), padded_d_projected.size(0))
            d_weight = rows_inner_product(padded_d_projected, previous_hidden, ctx.product_dtype)
        return (None, None, None, d_gates, d_weight,
                d_projected.sum(0) if needs_bias else None, dh, dc, *head_grads)


def run_packed_lstm(layout: PackedLayout, head: LatentHead | None, gate_inputs: torch.Tensor,
                    weight: torch.Tensor, bias: torch.Tensor, initial_h: torch.Tensor,
                    initial_c: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """:class:`PackedLSTM`, keeping what its backward pass reads only when a gradient can flow."""
    tensors = (gate_inputs, weight, bias, initial_h, initial_c, *(head.inputs if head is not None else ()))
    keep = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    return PackedLSTM.apply(layout, head, keep, *tensors)
