"""The GRU cell, run step by step with autograd."""

from __future__ import annotations

import torch

from seqvae_zoo.cells.base import RecurrentCell
from seqvae_zoo.registry import CELLS


@CELLS.register("gru")
class GRUCell(RecurrentCell):
    """The GRU cell, as ``nn.GRUCell``; run step by step with autograd.

    Gates laid out (reset, update, new): r, u = sigmoid(input + hidden gates);
    n = tanh(input_n + r * hidden_n); h_t = (1 - u) * n + u * h_{t-1}.

    No packed kernel: the decoders run it through their step-by-step equations with autograd (a clear reference path,
    slower than the LSTM's fast path)."""

    gates_per_unit = 3

    def step(self, input_gates: torch.Tensor, hidden_gates: torch.Tensor,
             state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        (h,) = state
        size = self.hidden_size
        reset, update = (input_gates[:, :2 * size] + hidden_gates[:, :2 * size]).sigmoid().chunk(2, dim=1)
        new = torch.tanh(input_gates[:, 2 * size:] + reset * hidden_gates[:, 2 * size:])
        return (torch.lerp(new, h, update),)
