"""Recurrence cells of the stochastic decoders: one step of h_t = cell([x_t, z_t, c~_t, z_enc], h_{t-1}).

A cell holds no parameters. The decoder projects everything a step reads onto the cell's ``gate_size`` gate
pre-activations and adds the projections up: x_t, z_enc and the per-step latents [z_t, c~_t] each through their own
linear map (the input gates), h_{t-1} through the recurrent projection (the hidden gates); the cell says how the two
sums make the new state. Keeping them apart lets a cell treat h_{t-1}'s share differently (the GRU's reset gate
scales it). A decoder selects its cell by name (gin: ``decoders.attentive.cell = "gru"``); a new cell is a subclass
registered with :func:`register_cell`.
"""

from __future__ import annotations

from typing import Callable

import torch

from seqvae_zoo.errors import UserError


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


CELLS: dict[str, type[RecurrentCell]] = {}


def register_cell(name: str) -> Callable[[type[RecurrentCell]], type[RecurrentCell]]:
    """Class decorator: make a :class:`RecurrentCell` selectable by ``name``."""

    def decorate(cls: type[RecurrentCell]) -> type[RecurrentCell]:
        if not (isinstance(cls, type) and issubclass(cls, RecurrentCell)):
            raise UserError(f"cannot register {cls!r} as cell {name!r}: a cell must subclass "
                            "seqvae_zoo.decoders.cells.RecurrentCell")
        if name in CELLS:
            raise UserError(f"cell {name!r} is already registered by {CELLS[name].__qualname__}; choose another name "
                            f"for {cls.__qualname__}")
        CELLS[name] = cls
        return cls

    return decorate


def make_cell(name: str, hidden_size: int) -> RecurrentCell:
    if name not in CELLS:
        raise UserError(f"unknown cell {name!r}: the stochastic decoders' cell must be one of "
                        f"{', '.join(sorted(CELLS))} (or a cell registered with seqvae_zoo.decoders.cells.register_cell)")
    return CELLS[name](hidden_size)


@register_cell("lstm")
class LSTMCell(RecurrentCell):
    """c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t), the gates (o, i, f) sigmoids and g a tanh of the summed gate
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


@register_cell("gru")
class GRUCell(RecurrentCell):
    """As ``nn.GRUCell``, gates laid out (reset, update, new): r, u = sigmoid(input + hidden gates);
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
