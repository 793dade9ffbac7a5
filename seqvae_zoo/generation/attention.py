"""The attentive decoder's self-attention over a sentence's own encoder states, as a heat map (the paper's Figure 3).

The weights come from the teacher-forced posterior pass (Algorithm 1) with every latent at its posterior mean, so a
map is deterministic: row t is step t, which predicts the t-th token; column i is the encoder state s_i of the i-th
token. Each row sums to 1 over the sentence's tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seqvae_zoo.data.vocab import EOS
from seqvae_zoo.generation.decoding import GenerationError
from seqvae_zoo.generation.sentences import encode_sentences
from seqvae_zoo.model import SeqVAE


@torch.inference_mode()
def attention_weights(model: SeqVAE, vocab, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """One (T, T) matrix per sentence, T its tokens with end-of-sentence."""
    if not model.decoder.reads_memory or model.encoder is None:
        raise GenerationError(f"the attention map needs an attentive decoder; this model's decoder is "
                              f"{type(model.decoder).registry_name!r} (use a vrae_sa model)")
    batch = encode_sentences(vocab, sentences, "the attention map")
    device = next(model.parameters()).device
    model.eval()
    terms = model(batch.tokens.to(device), batch.lengths.to(device), latent_mode="posterior_mean",
                  return_attention=True)
    if terms.attention is None:
        raise GenerationError(f"decoder {type(model.decoder).registry_name!r} reads the encoder without attention "
                              "weights to draw (use a vrae_sa model)")
    return [terms.attention[i, :n, :n].double().cpu().numpy() for i, n in enumerate(batch.lengths.tolist())]


def token_labels(vocab, words: Sequence[str]) -> list[str]:
    """What the model reads of a sentence, token by token (a word, or a sentencepiece piece; unknown words as
    unk), then end-of-sentence."""
    return [" ".join(vocab.decode([token])) for token in vocab.encode(words)[:-1]] + [EOS]


def draw_attention_map(path: str | Path, vocab, sentences: Sequence[Sequence[str]],
                       weights: Sequence[np.ndarray]) -> Path:
    """A PNG with one heat map per sentence, the words on both axes."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise GenerationError(f"the attention map is written as PNG: give a file name ending in .png, "
                              f"not {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = [len(w) for w in weights]
    figure = Figure(figsize=(max(5.0, 0.3 * max(sizes) + 3), sum(0.3 * n + 2 for n in sizes)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(weights), 1, squeeze=False)[:, 0]
    for axis, words, matrix in zip(axes, sentences, weights):
        labels = token_labels(vocab, words)
        image = axis.imshow(matrix, cmap="viridis", vmin=0.0, aspect="equal")
        axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
        axis.set_yticks(range(len(labels)), labels, fontsize=8)
        axis.set_xlabel("attended: encoder state of")
        axis.set_ylabel("decoder step predicting")
        figure.colorbar(image, ax=axis, shrink=0.8)
    figure.savefig(path, dpi=120)
    return path
