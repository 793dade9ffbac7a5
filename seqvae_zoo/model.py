"""SeqVAE: an encoder, a decoder, a prior over z_enc and auxiliary losses, composed into one model.

The model returns its loss terms per sentence (:class:`LossTerms`), so training, evaluation and importance
weighting all read the same numbers; :meth:`SeqVAE.objective` turns them into the training loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import gin
import torch
import torch.nn.functional as F
from torch import nn

from seqvae_zoo.aux_losses.base import AuxiliaryLoss
from seqvae_zoo.decoders.base import CAPABILITIES, Decoder, check_mode
from seqvae_zoo.encoders.base import Encoder
from seqvae_zoo.errors import BatchError, LengthsError, UserError
from seqvae_zoo.kernels.output import linear_cross_entropy
from seqvae_zoo.kernels.precision import full_precision
from seqvae_zoo.latents.base import LatentDistribution
from seqvae_zoo.priors.base import Prior
from seqvae_zoo.priors.standard_normal import StandardNormalPrior
from seqvae_zoo.registry import DECODERS
from seqvae_zoo.regularizers.base import Regularizer
from seqvae_zoo.schedules.base import EVERY_AUX_TERM, EVERY_KL_TERM


@dataclass
class LossTerms:
    """Per-sentence terms, each (B,), padded positions masked out of every one.

    nll: -log p(x | z) summed over tokens (end-of-sentence included); kl: KL terms by name; aux: auxiliary terms
    by name (unweighted); log_weight: log p(x, z) - log q(z | x) at the drawn latents (one importance weight);
    tokens: tokens per sentence with end-of-sentence; words: without it; kl_per_dimension: (B, D) KL per latent
    dimension of the terms a regularizer reads that way.
    """

    nll: torch.Tensor
    kl: dict[str, torch.Tensor]
    aux: dict[str, torch.Tensor]
    log_weight: torch.Tensor
    tokens: torch.Tensor
    words: torch.Tensor
    attention: torch.Tensor | None = None
    z_enc: torch.Tensor | None = field(default=None, repr=False)
    kl_per_dimension: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def neg_elbo(self) -> torch.Tensor:
        """-ELBO per sentence: reconstruction plus every KL term at weight 1 (auxiliary terms are not part of it)."""
        total = self.nll
        for value in self.kl.values():
            total = total + value
        return total


class CompositionError(UserError, ValueError):
    """Components that do not fit together: one needs what another does not provide, or a schedule weights a term
    the model does not have."""


def check_capabilities(decoder: Decoder, aux_losses: Sequence[AuxiliaryLoss]) -> None:
    """Refuse an auxiliary loss whose ``requires`` the decoder's ``provides`` lacks, naming both and the decoders
    that would do."""
    for loss in aux_losses:
        missing = sorted(loss.requires - decoder.provides)
        if not missing:
            continue
        needs = "; ".join(f"{name} ({CAPABILITIES.get(name, 'a capability no built-in decoder has')})"
                          for name in missing)
        providers = [f"@decoders.{name}" for name, cls in DECODERS.items() if set(missing) <= cls.provides]
        decoder_name = vars(type(decoder)).get("registry_name", type(decoder).__name__)  # not a parent's
        raise CompositionError(
            f"aux loss {loss.name!r} needs a decoder that provides {needs}; decoder {decoder_name!r} provides "
            f"{', '.join(sorted(decoder.provides)) or 'nothing'}. Use a decoder that does "
            f"(models.SeqVAE.decoder = {' or '.join(providers) or 'one that declares it in `provides`'}) or leave "
            f"the aux loss out of models.SeqVAE.aux_losses")


def check_per_dimension(regularizers: Sequence[Regularizer], prior: Prior | None) -> None:
    """Refuse a regularizer that reads a KL per dimension the model cannot give: only the sentence latent's, under
    a prior that factorizes over the dimensions."""
    for regularizer in regularizers:
        if not regularizer.per_dimension_terms:
            continue
        if prior is None or type(prior).kl_per_dimension is Prior.kl_per_dimension:
            raise CompositionError(
                f"{type(regularizer).__name__} reads the KL of each latent dimension, which "
                f"{'a model without encoder' if prior is None else type(prior).__name__} does not give: use a prior "
                "that factorizes over the dimensions (models.SeqVAE.latent_prior = @priors.standard_normal) or "
                "floor the whole term (regularizers.free_bits.per_dimension = False)")


def initialize_uniform(module: nn.Module, bound: float) -> None:
    """Draw every parameter of ``module`` from U(-bound, bound); an embedding's padding row stays zero, as
    ``nn.Embedding`` keeps it, so that padding still reads as nothing."""
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not 0 < bound < float("inf"):
        raise UserError(f"models.SeqVAE.init_range is the half-width of the uniform initialization and must be a "
                        f"positive number (the authors' code uses 0.1), or None for PyTorch's own; got {bound!r}")
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.uniform_(-bound, bound)
        for layer in module.modules():
            if isinstance(layer, nn.Embedding) and layer.padding_idx is not None:
                layer.weight[layer.padding_idx].zero_()


@gin.configurable(module="models")
class SeqVAE(nn.Module):
    """A sequence VAE assembled from registered components.

    ``encoder``, ``decoder``, ``latent_prior`` and each entry of ``aux_losses`` are component classes (gin:
    ``@encoders.lstm``, without parentheses): the model constructs them with the sizes only it knows.
    ``encoder=None`` gives a language model (no z_enc). ``init_range`` None keeps each layer's own PyTorch
    initialization; a number draws every parameter from U(-init_range, init_range) instead, as the authors' public
    code of Chien & Wang (2019) does with 0.1 (the paper does not say).
    """

    def __init__(self, vocab_size: int, pad_id: int, bos_id: int, unk_id: int, eos_id: int,
                 decoder: Callable[..., Decoder] = gin.REQUIRED,
                 encoder: Callable[..., Encoder] | None = None,
                 latent_prior: Callable[..., Prior] = StandardNormalPrior,
                 aux_losses: Sequence[Callable[..., AuxiliaryLoss]] = (),
                 regularizers: Sequence[Regularizer] = (),
                 init_range: float | None = None):
        super().__init__()
        self.vocab_size = vocab_size
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = pad_id, bos_id, eos_id, unk_id
        self.encoder = encoder(vocab_size=vocab_size, pad_id=pad_id) if encoder is not None else None
        z_dim = self.encoder.latent_dim if self.encoder is not None else 0
        memory_size = self.encoder.state_size if self.encoder is not None else 0
        self.decoder = decoder(vocab_size=vocab_size, pad_id=pad_id, z_enc_dim=z_dim, memory_size=memory_size)
        self.latent_prior = latent_prior(latent_dim=z_dim) if self.encoder is not None else None
        if self.latent_prior is not None:
            self.latent_prior.bind(self.encoder)  # checks the latent family; a prior may keep the encoder
        self.aux_losses = nn.ModuleList(loss() for loss in aux_losses)
        check_capabilities(self.decoder, self.aux_losses)
        self.regularizers = list(regularizers)
        check_per_dimension(self.regularizers, self.latent_prior)
        if init_range is not None:
            initialize_uniform(self, init_range)

    @property
    def kl_terms(self) -> tuple[str, ...]:
        """The KL terms of the loss: the sentence latent's, then the decoder's per-step latents'."""
        return (("z_enc",) if self.encoder is not None else ()) + self.decoder.per_step_latents

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def decoder_inputs(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: begin-of-sentence, then every token but the last; pad where the sentence has ended."""
        inputs = torch.cat([torch.full_like(tokens[:, :1], self.bos_id), tokens[:, :-1]], dim=1)
        return inputs.masked_fill(~mask, self.pad_id)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, latent_mode: str = "posterior",
                z_enc: torch.Tensor | None = None, return_attention: bool = False,
                posterior: LatentDistribution | None = None) -> LossTerms:
        """Score a batch: ``tokens`` (B, T) are the sentences with end-of-sentence, padded; ``lengths`` (B,) count
        end-of-sentence. z_enc is drawn from q (its mean in "posterior_mean" mode) unless given. ``posterior``
        stands in for the encoder's q(z_enc|x) (a refined one, say); the encoder then runs only if the decoder
        reads its memory (SVI refinement scores a batch this way dozens of times a step)."""
        check_mode(latent_mode)
        self.check_batch(tokens, lengths)
        mask = torch.arange(tokens.size(1), device=tokens.device)[None, :] < lengths[:, None]
        inputs = self.decoder_inputs(tokens, mask)
        if self.training:
            for regularizer in self.regularizers:
                inputs = regularizer.transform_inputs(inputs, mask, self.unk_id)
        kl: dict[str, torch.Tensor] = {}
        kl_per_dimension: dict[str, torch.Tensor] = {}
        log_weight = tokens.new_zeros(tokens.size(0), dtype=torch.float32)
        memory = None
        if self.encoder is not None:
            if posterior is None or self.decoder.reads_memory:
                memory = self.encoder(tokens, lengths)
            posterior = memory.posterior if posterior is None else posterior
            if z_enc is None:
                z_enc = posterior.mean if latent_mode == "posterior_mean" else posterior.rsample()
            kl["z_enc"] = self.latent_prior.kl(posterior, z_enc)
            if any("z_enc" in regularizer.per_dimension_terms for regularizer in self.regularizers):
                kl_per_dimension["z_enc"] = self.latent_prior.kl_per_dimension(posterior)
            log_weight = self.latent_prior.log_prob(z_enc) - posterior.log_prob(z_enc)
        output = self.decoder(inputs, lengths, z_enc, memory if self.decoder.reads_memory else None,
                              latent_mode, return_attention)
        step_mask = mask.to(output.hidden.dtype)
        # Only the real tokens are scored (masked by the lengths, like every other term): what follows a
        # sentence's end never reaches the output layer.
        token_nll = self._token_nll(output.hidden[mask], tokens[mask])
        nll = token_nll.new_zeros(mask.shape).masked_scatter(mask, token_nll).sum(dim=1)
        for name, per_step in output.kl.items():
            kl[name] = (per_step * step_mask).sum(dim=1)
        log_weight = log_weight - nll
        if output.log_ratio is not None:  # None: no per-step latents, a log ratio of 0
            log_weight = log_weight + (output.log_ratio * step_mask).sum(dim=1)
        aux = ({loss.name: loss(output, step_mask) for loss in self.aux_losses}
               if latent_mode.startswith("posterior") else {})
        return LossTerms(nll=nll, kl=kl, aux=aux, log_weight=log_weight, tokens=lengths, words=lengths - 1,
                         attention=output.attention, z_enc=z_enc, kl_per_dimension=kl_per_dimension)

    def check_batch(self, tokens: torch.Tensor, lengths: torch.Tensor) -> None:
        """Refuse, saying what to do, a batch the model would score wrongly or fail on deep inside: one length per
        row, each between 1 and the row's columns; every id, padding included, in the vocabulary (the encoder embeds
        the whole row); and end-of-sentence at each row's last real position, which ``words = lengths - 1`` and the
        NLL's end-of-sentence term take for granted. One device-to-host copy when the batch is sound."""
        if tokens.dim() != 2 or lengths.dim() != 1 or lengths.numel() != tokens.size(0):
            raise BatchError(f"tokens must be a (sentences, columns) tensor and lengths hold one length per row; "
                             f"got tokens of shape {tuple(tokens.shape)} and lengths of shape {tuple(lengths.shape)}")
        width = tokens.size(1)
        if lengths.numel() == 0 or width == 0:
            raise LengthsError(lengths.tolist(), width)
        ends = tokens.gather(1, (lengths.clamp(1, width) - 1)[:, None])[:, 0]
        shortest, longest, lowest, highest, unended = torch.stack([
            lengths.min(), lengths.max(), tokens.min(), tokens.max(), (ends != self.eos_id).sum()]).tolist()
        if shortest < 1 or longest > width:
            raise LengthsError(lengths.tolist(), width)
        if lowest < 0 or highest >= self.vocab_size:
            row, column = ((tokens < 0) | (tokens >= self.vocab_size)).nonzero()[0].tolist()
            raise BatchError(f"token ids must lie in [0, {self.vocab_size}), the model's vocabulary, padding included; "
                             f"row {row} holds {tokens[row, column].item()} at column {column}: encode the sentences "
                             f"with the vocabulary the model was built for and pad with its pad id ({self.pad_id})")
        if unended:
            row = int((ends != self.eos_id).nonzero()[0, 0])
            length = int(lengths[row])
            raise BatchError(f"row {row} does not end in end-of-sentence: at column {length - 1} (its length "
                             f"{length}, minus 1) it holds {ends[row].item()}, not the end-of-sentence id "
                             f"{self.eos_id}. Each row is a sentence's tokens followed by end-of-sentence "
                             "(Vocabulary.encode appends it) and its length counts that token")

    def _token_nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-log p(target | h) for each row of ``hidden`` (N, H). The plain linear output layer takes the fused
        path; a decoder with its own ``logits`` gets the cross-entropy of what it returns, in float32 (bfloat16
        logits under autocast included)."""
        if type(self.decoder).logits is Decoder.logits:
            return linear_cross_entropy(hidden, self.decoder.output.weight, self.decoder.output.bias, targets)
        return F.cross_entropy(full_precision(self.decoder.logits(hidden)), targets, reduction="none")

    def objective(self, terms: LossTerms, weights: Mapping[str, float]) -> torch.Tensor:
        """The training loss: mean over sentences of NLL + weighted KL terms (after regularizers) + weighted
        auxiliary terms. ``weights`` are a schedule's (:class:`seqvae_zoo.schedules.base.WeightSchedule`): a term
        is weighted by its own name, else by ``EVERY_KL_TERM`` or ``EVERY_AUX_TERM``, else 1."""
        resolved = self.term_weights(weights)
        loss = terms.nll.mean()
        for name, value in terms.kl.items():
            batch_kl = value.mean()
            per_dimension = terms.kl_per_dimension[name].mean(dim=0) if name in terms.kl_per_dimension else None
            for regularizer in self.regularizers:
                batch_kl = regularizer.transform_kl(name, batch_kl, per_dimension)
            loss = loss + resolved[name] * batch_kl
        for aux_loss in self.aux_losses:
            loss = loss + aux_loss.weight * resolved[aux_loss.name] * terms.aux[aux_loss.name].mean()
        return loss

    def term_weights(self, weights: Mapping[str, float]) -> dict[str, float]:
        """The weight each of the model's KL terms and auxiliary losses gets from a schedule's ``weights`` (checked):
        its own name's, else ``EVERY_KL_TERM``'s or ``EVERY_AUX_TERM``'s, else 1."""
        self.check_weights(weights)
        return ({name: weights.get(name, weights.get(EVERY_KL_TERM, 1.0)) for name in self.kl_terms}
                | {loss.name: weights.get(loss.name, weights.get(EVERY_AUX_TERM, 1.0)) for loss in self.aux_losses})

    def check_weights(self, weights: Mapping[str, float]) -> None:
        """Refuse weights for a term the model does not have: a schedule bound to it would silently do nothing."""
        aux_names = tuple(loss.name for loss in self.aux_losses)
        unknown = sorted(set(weights) - {*self.kl_terms, *aux_names, EVERY_KL_TERM, EVERY_AUX_TERM})
        if unknown:
            raise CompositionError(
                f"the weight schedule (training.TrainingSettings.kl_schedule) weights {', '.join(map(repr, unknown))}, "
                f"which this model does not have: its KL terms are {', '.join(self.kl_terms) or 'none'} and its aux "
                f"losses {', '.join(aux_names) or 'none'}. Bind the schedule to those (e.g. "
                f"kl_schedules.linear.terms = {list(self.kl_terms[:1])}), or leave its terms unset to weight every KL "
                f"term the model declares")
