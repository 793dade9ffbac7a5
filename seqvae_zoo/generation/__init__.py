"""Generation from a trained model: ``decoding`` turns next-token distributions into sentences (greedy as in the
paper's Algorithm 2, sampling with temperature/top-k/top-p, beam search) through the decoder alone; ``sentences``
chooses z_enc (prior, posterior of given sentences, interpolation between two); ``attention`` draws the attentive
decoder's self-attention as a heat map (the paper's Figure 3).
"""

from seqvae_zoo.generation.attention import attention_weights, draw_attention_map
from seqvae_zoo.generation.decoding import DecodingOptions, GenerationError, decode
from seqvae_zoo.generation.sentences import generate, interpolate, interpolation_path, reconstruct

__all__ = ["DecodingOptions", "GenerationError", "attention_weights", "decode", "draw_attention_map", "generate",
           "interpolate", "interpolation_path", "reconstruct"]
