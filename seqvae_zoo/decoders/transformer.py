"""Causal Transformer decoder (``transformer``): pre-norm masked self-attention over the words so far, z_enc as a
prefix or as memory for cross-attention, and a key-value cache for generation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqvae_zoo.decoders.base import Decoder, DecoderOutput
from seqvae_zoo.encoders.base import EncoderOutput
from seqvae_zoo.errors import check_sizes
from seqvae_zoo.registry import DECODERS

#: How z_enc enters the decoder: as the embedding of a position before the first word, or as memory that every
#: layer cross-attends to.
Z_ENC_MODES = ("prefix", "memory")


@DECODERS.register("transformer")
class TransformerDecoder(Decoder):
    """Causal pre-norm Transformer, z_enc as a prefix or as cross-attention memory, a key-value cache to generate.

    h_t = LN(Layers(e(x_s) + p_s, s <= t)); p(x_{t+1} | h_t) = softmax(W h_t + b). Each layer is torch's pre-norm
    ``nn.TransformerEncoderLayer`` (masked self-attention, MLP) under a causal mask, so position t attends to
    positions up to t only. z_enc enters as a prefix (``z_enc_as = "prefix"``: W_z z_enc is an extra position before
    the first word, which every word attends to) or as memory (``"memory"``: W_z z_enc, ``memory_slots`` vectors that
    each layer, an ``nn.TransformerDecoderLayer``, cross-attends to). Without a sentence latent (z_enc_dim 0) it is a
    Transformer language model. No per-step latents: the mode is ignored.

    Generation keeps every layer's keys and values of the positions so far (the prefix's included): a step computes
    the one new position and attends to the cache, instead of running the whole prefix again.
    """

    def __init__(self, vocab_size: int, pad_id: int, z_enc_dim: int = 0, memory_size: int = 0,
                 hidden_size: int = 256, layers: int = 2, heads: int = 4, feedforward_size: int = 1024,
                 dropout: float = 0.1, max_length: int = 256, z_enc_as: str = "prefix", memory_slots: int = 4):
        if z_enc_as not in Z_ENC_MODES:
            raise ValueError(f"decoders.transformer.z_enc_as must be one of {', '.join(map(repr, Z_ENC_MODES))}, "
                             f"got {z_enc_as!r}")
        check_sizes("decoders.transformer", hidden_size=hidden_size, heads=heads, feedforward_size=feedforward_size)
        if hidden_size % heads:
            raise ValueError(f"decoders.transformer.hidden_size ({hidden_size}) must be a multiple of heads ({heads})")
        if layers < 1 or max_length < 1 or memory_slots < 1:
            raise ValueError("decoders.transformer needs layers, max_length and memory_slots of at least 1, got "
                             f"{layers}, {max_length} and {memory_slots}")
        super().__init__(vocab_size, hidden_size)
        self.max_length = max_length
        self.cross_attends = bool(z_enc_dim) and z_enc_as == "memory"
        self.prefix_length = int(bool(z_enc_dim) and z_enc_as == "prefix")
        self.embedding = nn.Embedding(vocab_size, hidden_size, padding_idx=pad_id)
        self.position = nn.Embedding(max_length, hidden_size)
        self.embedding_dropout = nn.Dropout(dropout)
        slots = memory_slots if self.cross_attends else 1
        self.z_enc_projection = nn.Linear(z_enc_dim, slots * hidden_size) if z_enc_dim else None
        layer = nn.TransformerDecoderLayer if self.cross_attends else nn.TransformerEncoderLayer
        self.layers = nn.ModuleList(layer(hidden_size, heads, feedforward_size, dropout, batch_first=True,
                                          norm_first=True) for _ in range(layers))
        self.final_norm = nn.LayerNorm(hidden_size)

    def _z_enc_context(self, z_enc: torch.Tensor | None) -> torch.Tensor | None:
        """W_z z_enc as (B, slots, H): the prefix position (one slot) or the cross-attention memory."""
        if self.z_enc_projection is None:
            return None
        return self.z_enc_projection(z_enc).unflatten(-1, (-1, self.hidden_size))

    def _embed(self, tokens: torch.Tensor, first_position: int) -> torch.Tensor:
        """e(x_t) + p_t for the (B, L) ``tokens`` at positions ``first_position``, ``first_position + 1``, ..."""
        end = first_position + tokens.size(1)
        if end > self.max_length:
            raise ValueError(f"decoders.transformer has position embeddings for {self.max_length} tokens and was "
                             f"given {end}: raise decoders.transformer.max_length (the longest sentence, end-of-"
                             "sentence included, or the generation length)")
        positions = torch.arange(first_position, end, device=tokens.device)
        return self.embedding_dropout(self.embedding(tokens) + self.position(positions))

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, z_enc: torch.Tensor | None,
                memory: EncoderOutput | None, mode: str = "posterior",
                return_attention: bool = False) -> DecoderOutput:
        states = self._embed(inputs, 0)
        context = self._z_enc_context(z_enc)
        if self.prefix_length:
            states = torch.cat([context, states], dim=1)
        causal = nn.Transformer.generate_square_subsequent_mask(states.size(1), device=states.device,
                                                                dtype=states.dtype)
        for layer in self.layers:
            if self.cross_attends:
                states = layer(states, context, tgt_mask=causal, tgt_is_causal=True)
            else:
                states = layer(states, src_mask=causal, is_causal=True)
        return DecoderOutput(hidden=self.final_norm(states[:, self.prefix_length:]))

    # -- generation with a key-value cache ----------------------------------------------------------------------
    def start(self, z_enc: torch.Tensor | None, batch_size: int) -> tuple[torch.Tensor, ...]:
        """The cache (keys, values of every layer, each (B, positions, H)): empty, or holding the prefix."""
        empty = self.output.weight.new_zeros(batch_size, 0, self.hidden_size)
        cache = (empty,) * (2 * len(self.layers))
        if self.prefix_length:
            _, cache = self._advance(self._z_enc_context(z_enc), cache, None)
        return cache

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...], z_enc: torch.Tensor | None,
             latent_mode: str = "prior_sample") -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        position = state[0].size(1) - self.prefix_length
        memory = self._z_enc_context(z_enc) if self.cross_attends else None
        states, cache = self._advance(self._embed(tokens[:, None], position), state, memory)
        return self.logits(self.final_norm(states[:, 0])), cache

    def _advance(self, states: torch.Tensor, cache: tuple[torch.Tensor, ...],
                 memory: torch.Tensor | None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One new position (B, 1, H) through every layer, as the layer's own pre-norm forward computes it, its
        self-attention reading the cached keys and values (and, cross-attending, ``memory``); the output and the
        cache with the position added."""
        grown = []
        for index, layer in enumerate(self.layers):
            keys, values = cache[2 * index:2 * index + 2]
            attended, keys, values = _cached_self_attention(layer.self_attn, layer.norm1(states), keys, values)
            states = states + layer.dropout1(attended)
            if self.cross_attends:
                states = states + layer._mha_block(layer.norm2(states), memory, None, None)
                states = states + layer._ff_block(layer.norm3(states))
            else:
                states = states + layer._ff_block(layer.norm2(states))
            grown += [keys, values]
        return states, tuple(grown)


def _cached_self_attention(attention: nn.MultiheadAttention, query: torch.Tensor, keys: torch.Tensor,
                           values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``attention`` of one new position (B, 1, H) over the cached positions and itself: its query, key and value
    from the module's input projection, the key and value appended to the cache (B, L, H); the attended output and
    the grown cache."""
    new_query, new_key, new_value = F.linear(query, attention.in_proj_weight, attention.in_proj_bias).chunk(3, -1)
    keys, values = torch.cat([keys, new_key], dim=1), torch.cat([values, new_value], dim=1)

    def heads(tensor: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, heads, L, H / heads)
        return tensor.unflatten(-1, (attention.num_heads, -1)).transpose(1, 2)

    attended = F.scaled_dot_product_attention(heads(new_query), heads(keys), heads(values))
    return attention.out_proj(attended.transpose(1, 2).flatten(2)), keys, values
