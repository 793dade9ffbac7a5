"""Metrics only the synthetic corpus allows: the gap to the true NLL, and whether z_enc recovers the true latent."""

from __future__ import annotations

from collections import Counter
from typing import Hashable, Sequence

import torch


def nll_gap(model_nll: Sequence[float], true_nll: Sequence[float], tokens: int) -> dict[str, float]:
    """The model's NLL minus the true NLL (the corpus's own log-likelihood, end-of-sentence included), per sentence
    and per token. An upper bound such as IW-NLL gives a gap >= 0 up to sampling noise."""
    excess = float(sum(model_nll)) - float(sum(true_nll))
    return {"true_nll": float(sum(true_nll)) / len(true_nll), "gap": excess / len(true_nll),
            "gap_per_token": excess / tokens}


def latent_probe(posterior_mean: torch.Tensor, labels: Sequence[Hashable], seed: int = 0) -> dict[str, float]:
    """Accuracy of a nearest-class-mean classifier on the posterior means, fit on a random half of the sentences and
    tested on the other half, beside the accuracy of always answering the fit half's most frequent label.

    The classifier has no parameters to tune, so the score measures the latent space itself. It is blind to scale:
    posterior means that vary by a tiny fraction of the prior's spread (a posterior collapsed in KL and MI) score as
    well as the same means scaled up, so it says what z_enc carries only beside the mutual information.
    """
    if len(labels) != posterior_mean.size(0):
        raise ValueError(f"{len(labels)} true latents for {posterior_mean.size(0)} sentences")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    fit, held_out = order[:len(order) // 2], order[len(order) // 2:]
    classes = sorted(set(labels[i] for i in fit), key=repr)
    features = posterior_mean.double().cpu()
    centroids = torch.stack([features[[i for i in fit if labels[i] == c]].mean(dim=0) for c in classes])
    nearest = torch.cdist(features[held_out], centroids).argmin(dim=1).tolist()
    correct = sum(classes[k] == labels[i] for k, i in zip(nearest, held_out))
    majority, _ = Counter(labels[i] for i in fit).most_common(1)[0]
    return {"probe_accuracy": correct / len(held_out),
            "probe_chance": sum(labels[i] == majority for i in held_out) / len(held_out)}
