"""The recurrence-cell interface."""

from __future__ import annotations

import torch


class RecurrentCell:
    """One step of a recurrence from its gate pre-activations.

    The state is a tuple of (B, hidden_size) tensors whose first is h_t, the state the decoder's heads and output
    layer read. ``packed``: the packed recurrence of :mod:`seqvae_zoo.kernels.recurrence` runs this cell (with a
    hand-written backward); any other cell runs through the decoders' step-by-step equations, with autograd.
    """

    packed = False
    #: Gate pre-activations per unit of the state.
    gates_per_unit: int
    #: Tensors in the state.
    state_tensors: int = 1

    def __init__(self, hidden_size: int):
        self.hidden_size = hidden_size

    @property
    def gate_size(self) -> int:
        return self.gates_per_unit * self.hidden_size

    def initial_state(self, batch_size: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The state before the first step: zeros."""
        zeros = like.new_zeros(batch_size, self.hidden_size)
        return (zeros,) * self.state_tensors

    def step(self, input_gates: torch.Tensor, hidden_gates: torch.Tensor,
             state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:  # pragma: no cover
        """The state after one step, from the input gates (B, gate_size), the hidden gates (B, gate_size) and the
        state before it."""
        raise NotImplementedError
