"""The component registries: lookups with helpful errors, refused registrations, folder discovery and plugins."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

from plugin_fixture import EXAMPLE_DECODER, install_plugin, isolated_registrations
from seqvae_zoo import build_model, parse_config, registry
from seqvae_zoo.decoders.lstm import LSTMDecoder
from seqvae_zoo.encoders.lstm import LSTMEncoder
from seqvae_zoo.errors import UserError
from seqvae_zoo.registry import DECODERS, PRIORS, Registry, RegistryError, UnknownComponentError

SMALL_SIZES = ["EMBEDDING = 12", "HIDDEN = 16", "LATENT = 4"]


@pytest.fixture
def isolated(monkeypatch):
    with isolated_registrations(monkeypatch):
        yield monkeypatch


def test_unknown_name_names_the_closest_match_and_every_registered_name():
    with pytest.raises(UnknownComponentError) as caught:
        DECODERS.get("atentive")
    message = str(caught.value)
    assert "unknown decoder 'atentive'" in message
    assert "Did you mean 'attentive'?" in message
    assert "Registered decoders: attentive, lstm, stochastic" in message
    assert isinstance(caught.value, UserError) and isinstance(caught.value, KeyError)


def test_unknown_name_far_from_every_entry_offers_no_guess():
    with pytest.raises(UnknownComponentError) as caught:
        PRIORS.get("zzzz")
    assert "Did you mean" not in str(caught.value)
    assert "mixture, standard_normal" in str(caught.value)


def test_duplicate_name_is_refused_and_the_first_registration_kept(isolated):
    class Impostor(LSTMDecoder):
        pass

    with pytest.raises(RegistryError, match=r"decoders 'lstm' is already registered by "
                                            r"seqvae_zoo\.decoders\.lstm\.LSTMDecoder; choose another name"):
        DECODERS.register("lstm")(Impostor)
    assert DECODERS.get("lstm").__name__ == "LSTMDecoder"


@pytest.mark.parametrize("candidate", [nn.Module, LSTMEncoder, lambda vocab_size: None],
                         ids=["plain-module", "an-encoder", "a-function"])
def test_wrong_base_class_is_refused(isolated, candidate):
    with pytest.raises(RegistryError, match=r"must subclass seqvae_zoo\.decoders\.base\.Decoder"):
        DECODERS.register("not_a_decoder")(candidate)
    assert "not_a_decoder" not in DECODERS


def test_a_name_gin_cannot_select_is_refused_with_a_usable_spelling(isolated):
    class Hyphenated(LSTMDecoder):
        pass

    with pytest.raises(RegistryError, match=r"must be a Python identifier \(for example 'lstm_tied'\)"):
        DECODERS.register("lstm-tied")(Hyphenated)
    assert "lstm-tied" not in DECODERS


def test_every_module_of_a_component_folder_is_discovered(isolated, tmp_path):
    """Dropping a file into a registry's folder is all it takes: nothing imports it by hand."""
    package = tmp_path / "widget_parts"
    package.mkdir()
    (package / "__init__.py").write_text('"""Widgets; no imports here on purpose."""\n')
    (package / "base.py").write_text("class Widget:\n    pass\n")
    (package / "round_widget.py").write_text(textwrap.dedent("""
        from widget_parts.base import Widget
        from seqvae_zoo.registry import REGISTRIES

        @REGISTRIES["widgets"].register("round")
        class RoundWidget(Widget):
            '''A widget that is round.'''
    """))
    isolated.syspath_prepend(str(tmp_path))
    widgets = Registry("widgets", "widget_parts.base.Widget", "widget_parts", "test widgets")
    isolated.setitem(registry.REGISTRIES, "widgets", widgets)
    isolated.setattr(registry, "_loaded", False)
    assert widgets.names() == ["round"]
    assert widgets.get("round").__module__ == "widget_parts.round_widget"


def test_a_second_registry_of_the_same_kind_is_refused():
    with pytest.raises(RegistryError, match="a registry of kind 'decoders' already exists"):
        registry.add_registry(Registry("decoders", "seqvae_zoo.decoders.base.Decoder", "seqvae_zoo.decoders", ""))


WIDE_PRIOR_PLUGIN = textwrap.dedent('''
    """A plugin whose entry point is a function that registers its component when called."""
    import math

    import torch


    def register():
        from seqvae_zoo.gaussian import gaussian_log_prob
        from seqvae_zoo.priors.base import Prior
        from seqvae_zoo.registry import PRIORS

        @PRIORS.register("wide_normal")
        class WideNormal(Prior):
            """N(0, scale^2 I); KL by the base class's Monte-Carlo estimate."""

            def __init__(self, latent_dim, scale=2.0):
                super().__init__()
                self.latent_dim, self.logvar = latent_dim, 2 * math.log(scale)

            def log_prob(self, z):
                return gaussian_log_prob(z, torch.zeros_like(z), torch.full_like(z, self.logvar))

            def sample(self, count):
                return torch.randn(count, self.latent_dim) * math.exp(0.5 * self.logvar)
''')


def _small_batch(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]])
    return tokens % vocab_size, torch.tensor([4, 3])


def test_components_from_entry_points_are_usable_from_a_gin_file(isolated, tmp_path):
    site = tmp_path / "site"
    install_plugin(site, "seqvae-demo-plugins",
                   entry_points={"gru": "seqvae_demo_gru", "wide": "seqvae_demo_prior:register"},
                   modules={"seqvae_demo_gru": EXAMPLE_DECODER.read_text(), "seqvae_demo_prior": WIDE_PRIOR_PLUGIN})
    isolated.syspath_prepend(str(site))
    isolated.setattr(registry, "_loaded", False)  # as in a fresh process: plugins load on the next lookup
    assert "gru" not in DECODERS._entries and "wide_normal" not in PRIORS._entries
    config = tmp_path / "vrae_gru_wide.gin"
    config.write_text(textwrap.dedent("""
        include 'vrae.gin'
        models.SeqVAE.decoder = @decoders.gru
        models.SeqVAE.latent_prior = @priors.wide_normal
        decoders.gru.embedding_dim = %EMBEDDING
        decoders.gru.hidden_size = 20
        priors.wide_normal.scale = 3.0
    """))
    parse_config([str(config)], SMALL_SIZES)
    model = build_model(vocab_size=30, pad_id=0, bos_id=1, unk_id=3, eos_id=2)
    assert type(model.decoder).__module__ == "seqvae_demo_gru" and model.decoder.hidden_size == 20
    assert type(model.latent_prior).__module__ == "seqvae_demo_prior" and model.latent_prior.logvar == pytest.approx(
        2 * torch.log(torch.tensor(3.0)).item())
    terms = model(*_small_batch(30))
    loss = model.objective(terms, {})
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_a_plugin_that_fails_to_load_is_named(isolated, tmp_path):
    site = tmp_path / "site"
    install_plugin(site, "seqvae-broken-plugin", entry_points={"broken": "seqvae_no_such_module"}, modules={})
    isolated.syspath_prepend(str(site))
    isolated.setattr(registry, "_loaded", False)
    with pytest.raises(RegistryError, match=r"plugin 'broken' \(seqvae_no_such_module\) failed to load: "
                                            r"No module named 'seqvae_no_such_module'"):
        DECODERS.names()


def test_plugin_registrations_are_undone_after_the_plugin_test():
    """The isolation above leaves no trace: later tests see the built-in components only."""
    assert DECODERS.names() == ["attentive", "lstm", "stochastic", "transformer"]
    assert "wide_normal" not in PRIORS
    assert not any(key.startswith(("gru=", "wide=", "broken=")) for key in registry._plugins_loaded)
