"""The LSTM cell, which the packed recurrence runs."""

from __future__ import annotations

import torch

from seqvae_zoo.cells.base import RecurrentCell
from seqvae_zoo.registry import CELLS


@CELLS.register("lstm")
class LSTMCell(RecurrentCell):
    """The LSTM cell, which the packed recurrence runs (the paper's cell).

    c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t), the gates (o, i, f) sigmoids and g a tanh of the summed gate
    pre-activations, laid out (output, input, forget, cell). Runs on the packed recurrence."""

    packed = True
    gates_per_unit = 4
    state_tensors = 2

    def step(self, input_gates: torch.Tensor, hidden_gates: torch.Tensor,
             state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        _, c = state
        gates = input_gates + hidden_gates
        output_gate, input_gate, forget_gate = gates[:, :3 * self.hidden_size].sigmoid().chunk(3, dim=1)
        c = forget_gate * c + input_gate * torch.tanh(gates[:, 3 * self.hidden_size:])
        return output_gate * torch.tanh(c), c
