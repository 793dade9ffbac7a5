"""Generation: the decoder alone in prior mode, decoding strategies that must agree, interpolation paths, attention
heat maps, and clear refusals."""

import math

import matplotlib.image
import numpy as np
import pytest
import torch

from seqvae_zoo import build_model, parse_config
from seqvae_zoo.data.vocab import SPECIALS, Vocabulary
from seqvae_zoo.generation import (DecodingOptions, GenerationError, attention_weights, draw_attention_map, generate,
                                   interpolate, interpolation_path, reconstruct)
from seqvae_zoo.generation import sentences
from seqvae_zoo.generation.decoding import _truncate
from seqvae_zoo.presets import preset_names

VOCAB = Vocabulary([*SPECIALS, *(f"w{i}" for i in range(30))])
SENTENCES = [["w1", "w2", "w9", "w4"], ["w3", "w3", "w17"], ["w25"]]


def small_model(preset: str, seed: int = 0):
    parse_config([preset], ["EMBEDDING = 16", "HIDDEN = 32", "LATENT = 4"])
    torch.manual_seed(seed)
    return build_model(VOCAB.size, VOCAB.pad_id, VOCAB.bos_id, VOCAB.unk_id, VOCAB.eos_id).eval()


class Unreadable(torch.nn.Module):
    """Stands in for a layer that must not be used: calling it or reading its weight fails the test (the attentive
    decoder reads the weights of its attention layers directly, so a forward hook would never fire)."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def forward(self, *_):
        raise AssertionError(f"{self.what} was used during generation")

    @property
    def weight(self):
        raise AssertionError(f"{self.what} was read during generation")


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
def test_generation_from_the_prior_never_reads_the_encoder_or_its_attention(strategy):
    model = small_model("vrae_sa_aux")
    model.encoder = Unreadable("the encoder")
    for name in ("key_projection", "score", "posterior_context"):  # attention over the encoder states; q(z_t | .)
        setattr(model.decoder, name, Unreadable(f"decoder.{name}"))
    sentences = generate(model, VOCAB, 4, DecodingOptions(strategy, beam_size=3, max_length=12))
    assert len(sentences) == 4 and all(len(s) <= 12 for s in sentences)
    assert all(word not in ("<pad>", "<bos>", "<eos>") for s in sentences for word in s)


@pytest.mark.parametrize("preset", ["lstm", "vrae", "vrae_sa_aux"])
@pytest.mark.parametrize("latent_mode", ["prior_sample", "prior_mean"])
def test_beam_search_with_one_beam_and_sampling_with_top_k_one_equal_greedy(preset, latent_mode):
    model = small_model(preset)
    greedy = generate(model, VOCAB, 6, DecodingOptions("greedy", max_length=15, latent_mode=latent_mode), seed=4)
    beam = generate(model, VOCAB, 6, DecodingOptions("beam", beam_size=1, max_length=15, latent_mode=latent_mode),
                    seed=4)
    top_1 = generate(model, VOCAB, 6, DecodingOptions("sample", top_k=1, temperature=2.0, max_length=15,
                                                      latent_mode=latent_mode), seed=4)
    assert beam == greedy and top_1 == greedy
    assert len({tuple(s) for s in greedy}) > 1 or preset == "lstm"  # z_enc from the prior varies the sentences


def test_sampling_follows_its_seed():
    model = small_model("vrae")
    options = DecodingOptions("sample", max_length=10)
    assert generate(model, VOCAB, 5, options, seed=1) == generate(model, VOCAB, 5, options, seed=1)
    assert generate(model, VOCAB, 5, options, seed=1) != generate(model, VOCAB, 5, options, seed=2)


def test_top_p_keeps_the_smallest_set_of_tokens_that_reaches_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = lambda p: torch.isfinite(_truncate(logits, 0, p))[0].tolist()  # noqa: E731
    assert kept(0.7) == [True, True, False, False]
    assert kept(0.5) == [True, False, False, False]
    assert kept(0.96) == [True, True, True, True]
    assert torch.isfinite(_truncate(logits, 2, 1.0))[0].tolist() == [True, True, False, False]


def test_beam_search_returns_a_sentence_per_latent_and_stops_at_the_maximum_length():
    model = small_model("vrae_sa_aux")
    sentences = generate(model, VOCAB, 3, DecodingOptions("beam", beam_size=4, max_length=5))
    assert len(sentences) == 3 and all(len(s) <= 5 for s in sentences)


def test_reconstruction_reads_each_sentence_through_its_posterior():
    model = small_model("vrae")
    mean = reconstruct(model, VOCAB, SENTENCES, DecodingOptions(max_length=10))
    assert len(mean) == len(SENTENCES)
    assert mean == reconstruct(model, VOCAB, SENTENCES, DecodingOptions(max_length=10))
    with torch.no_grad():  # a different encoder gives different z_enc, hence different reconstructions
        model.encoder.posterior.bias[:4].add_(3.0)
    assert reconstruct(model, VOCAB, SENTENCES, DecodingOptions(max_length=10)) != mean


def test_interpolation_paths_run_from_one_end_to_the_other():
    start, end = torch.tensor([2.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, 0.0])
    linear = interpolation_path(start, end, 5, "linear")
    torch.testing.assert_close(linear[2], torch.tensor([1.0, 2.0, 0.0]))
    spherical = interpolation_path(start, end, 5, "spherical")
    torch.testing.assert_close(spherical[[0, -1]], torch.stack([start, end]))
    torch.testing.assert_close(spherical.norm(dim=1), torch.linspace(2, 4, 5))
    angles = torch.atan2(spherical[:, 1], spherical[:, 0])
    torch.testing.assert_close(angles, torch.linspace(0, math.pi / 2, 5))  # evenly along the great circle
    assert spherical[:, 2].abs().max() == 0


def test_interpolation_decodes_one_sentence_per_step():
    model = small_model("vrae_sa_aux")
    path = interpolate(model, VOCAB, SENTENCES[0], SENTENCES[1], steps=4, how="spherical",
                       options=DecodingOptions(max_length=8))
    assert len(path) == 4


def test_the_attention_map_is_written_and_each_row_sums_to_one(tmp_path):
    model = small_model("vrae_sa_aux")
    weights = attention_weights(model, VOCAB, SENTENCES)
    assert [w.shape for w in weights] == [(5, 5), (4, 4), (2, 2)]
    for matrix in weights:
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-5)
        assert (matrix >= 0).all()
    path = draw_attention_map(tmp_path / "maps" / "attention.png", VOCAB, SENTENCES, weights)
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200


def test_the_attention_map_refuses_models_without_attention_and_files_that_are_not_png(tmp_path):
    with pytest.raises(GenerationError, match="needs an attentive decoder; this model's decoder is 'lstm'"):
        attention_weights(small_model("vrae"), VOCAB, SENTENCES)
    parse_config(["vrae"], ["EMBEDDING = 16", "HIDDEN = 32", "LATENT = 4",
                            "models.SeqVAE.decoder = @decoders.stochastic"])
    stochastic = build_model(VOCAB.size, VOCAB.pad_id, VOCAB.bos_id, VOCAB.unk_id, VOCAB.eos_id)
    with pytest.raises(GenerationError, match="without attention weights"):
        attention_weights(stochastic, VOCAB, SENTENCES)
    weights = attention_weights(small_model("vrae_sa"), VOCAB, SENTENCES)
    with pytest.raises(GenerationError, match="ending in .png"):
        draw_attention_map(tmp_path / "map.jpg", VOCAB, SENTENCES, weights)


def test_an_empty_sentence_or_a_model_without_latent_cannot_be_reconstructed():
    with pytest.raises(GenerationError, match="sentence 2 is empty: reconstruction needs at least one word"):
        reconstruct(small_model("vrae"), VOCAB, [["w1"], []])
    with pytest.raises(GenerationError, match="no sentence given"):
        reconstruct(small_model("vrae"), VOCAB, [])
    with pytest.raises(GenerationError, match="has none .no encoder, like the lstm preset."):
        reconstruct(small_model("lstm"), VOCAB, SENTENCES)


@pytest.mark.parametrize("options, message", [
    (dict(strategy="nucleus"), "strategy 'nucleus' is unknown"),
    (dict(latent_mode="posterior"), "latent mode 'posterior' cannot generate"),
    (dict(temperature=0.0), "temperature must be positive"),
    (dict(top_k=-1), "top-k must be 0"),
    (dict(top_p=0.0), "top-p must be in"),
    (dict(beam_size=0), "beam size must be at least 1"),
    (dict(max_length=0), "maximum length must be at least 1"),
])
def test_bad_decoding_options_are_refused(options, message):
    with pytest.raises(GenerationError, match=message):
        DecodingOptions(**options)


def test_bad_counts_and_interpolations_are_refused():
    model = small_model("vrae")
    with pytest.raises(GenerationError, match="at least 1, got 0"):
        generate(model, VOCAB, 0)
    with pytest.raises(GenerationError, match="interpolation 'cubic' is unknown"):
        interpolate(model, VOCAB, SENTENCES[0], SENTENCES[1], how="cubic")
    with pytest.raises(GenerationError, match="at least 2 steps"):
        interpolate(model, VOCAB, SENTENCES[0], SENTENCES[1], steps=1)


@pytest.mark.parametrize("preset", [name for name in preset_names() if name != "lstm"])
def test_every_preset_with_a_latent_generates_reconstructs_and_interpolates(preset):
    """Each prior draws z_enc for generation (a uniform sphere, a mixture of posteriors, a standard normal), and
    each family's mean stands for a sentence: an interpolation's ends decode as the reconstructions of its two
    sentences, with the per-step latents at their prior's mean so that nothing else is drawn."""
    model = small_model(preset)
    options = DecodingOptions(max_length=8, latent_mode="prior_mean")
    sentences = generate(model, VOCAB, 3, DecodingOptions("sample", max_length=8), seed=2)
    assert len(sentences) == 3 and all(len(s) <= 8 and set(s) <= set(VOCAB.tokens) for s in sentences)
    ends = reconstruct(model, VOCAB, SENTENCES[:2], options)
    for how in ("linear", "spherical"):
        path = interpolate(model, VOCAB, SENTENCES[0], SENTENCES[1], 4, how, options)
        assert len(path) == 4 and [path[0], path[-1]] == ends


@pytest.mark.parametrize("preset, path", [("vmf_vae", "spherical"), ("vrae", "linear"), ("bn_vae_06", "linear")])
def test_the_default_interpolation_stays_on_the_latents_support(preset, path, monkeypatch):
    """A vMF latent lies on the unit sphere: the straight line between two directions cuts through it."""
    chosen = []
    monkeypatch.setattr(sentences, "interpolation_path",
                        lambda *args: chosen.append(args[-1]) or interpolation_path(*args))
    model = small_model(preset)
    assert interpolate(model, VOCAB, SENTENCES[0], SENTENCES[1], 3, options=DecodingOptions(max_length=8)) == \
        interpolate(model, VOCAB, SENTENCES[0], SENTENCES[1], 3, path, DecodingOptions(max_length=8))
    assert chosen == [path, path]
