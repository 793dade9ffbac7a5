"""Recurrence cells of the stochastic and attentive decoders: one step of h_t = cell([x_t, z_t, c~_t, z_enc], h_{t-1}).

A cell holds no parameters. The decoder projects everything a step reads onto the cell's ``gate_size`` gate
pre-activations and adds the projections up: x_t, z_enc and the per-step latents [z_t, c~_t] each through their own
linear map (the input gates), h_{t-1} through the recurrent projection (the hidden gates); the cell says how the two
sums make the new state. Keeping them apart lets a cell treat h_{t-1}'s share differently (the GRU's reset gate
scales it). One module per cell, each registered with ``@CELLS.register(name)``; a decoder selects its cell by name
(gin: ``decoders.attentive.cell = "gru"``).
"""
