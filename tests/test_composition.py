"""Components that must fit together: an auxiliary loss is refused, when the model is built, a decoder that does not
declare what it requires; a weight schedule runs over the KL terms the model declares and is refused a term the
model does not have."""

from __future__ import annotations

from pathlib import Path

import gin
import pytest
import torch

from plugin_fixture import isolated_registrations
from seqvae_zoo import SeqVAE, build_model, parse_config
from seqvae_zoo.aux_losses.context_prediction import ContextPredictionLoss
from seqvae_zoo.decoders.attentive import AttentiveDecoder
from seqvae_zoo.decoders.transformer import TransformerDecoder
from seqvae_zoo.encoders.lstm import LSTMEncoder
from seqvae_zoo.errors import UserError
from seqvae_zoo.model import CompositionError
from seqvae_zoo.schedules.annealing import Constant, Linear, TwoPhase
from seqvae_zoo.training.run import train_run

SMALL = ["EMBEDDING = 8", "HIDDEN = 8", "LATENT = 4", "INPUT_DROPOUT = 0.0"]
IDS = {"vocab_size": 20, "pad_id": 0, "bos_id": 1, "unk_id": 3, "eos_id": 2}


def small_model(preset: str, *bindings: str) -> SeqVAE:
    parse_config([preset], [*SMALL, *bindings])
    torch.manual_seed(0)
    return build_model(**IDS)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([[5, 6, 7, 2], [8, 2, 0, 0]]), torch.tensor([4, 2])


# -- capabilities ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("decoder", ["lstm", "stochastic", "transformer"])
def test_an_aux_loss_is_refused_a_decoder_without_the_capability_it_requires(decoder):
    with pytest.raises(UserError) as refused:
        small_model("vrae_sa_aux", f"models.SeqVAE.decoder = @decoders.{decoder}",
                    "decoders.transformer.hidden_size = 8")
    message = str(refused.value)
    assert ("aux loss 'context_prediction' needs a decoder that provides context_prior (the predicted attention "
            "context p(c~_t | z_t)") in message
    assert f"decoder {decoder!r} provides nothing" in message
    assert ("models.SeqVAE.decoder = @decoders.attentive) or leave the aux loss out of models.SeqVAE.aux_losses"
            in message)


def test_the_declaration_decides_not_the_decoders_attributes():
    """A decoder that declares the capability is accepted whatever its layers; one that has the attentive decoder's
    layers but declares nothing is refused."""

    class Declares(TransformerDecoder):
        provides = frozenset({"context_prior"})

    class DeclaresNothing(AttentiveDecoder):
        provides = frozenset()

    def build(decoder):
        gin.clear_config()  # the model's arguments as given here, none from an earlier test's bindings
        return SeqVAE(**IDS, encoder=lambda **sizes: LSTMEncoder(**sizes, embedding_dim=8, hidden_size=8, latent_dim=4),
                      decoder=lambda **sizes: decoder(**sizes, hidden_size=8), aux_losses=[ContextPredictionLoss])

    assert isinstance(build(Declares).decoder, Declares)
    with pytest.raises(CompositionError, match="decoder 'DeclaresNothing' provides nothing"):
        build(DeclaresNothing)


def test_the_attentive_decoder_provides_what_the_context_prediction_loss_requires():
    model = small_model("vrae_sa_aux")
    assert ContextPredictionLoss.requires <= model.decoder.provides
    assert "context_prediction" in model(*batch()).aux


# -- schedules over the declared KL terms ----------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["vrae", "vrae_sa"])
def test_a_schedule_without_terms_weights_every_kl_term_the_model_declares(preset):
    """At weight 0 the objective is the reconstruction alone, at weight 1 the -ELBO: whatever the model's KL terms."""
    model = small_model(preset)
    torch.manual_seed(1)
    terms = model(*batch())
    assert set(terms.kl) == set(model.kl_terms) and model.kl_terms
    torch.testing.assert_close(model.objective(terms, Linear(warmup_epochs=1.0).weights(0, 0.0)), terms.nll.mean())
    torch.testing.assert_close(model.objective(terms, Constant().weights(0, 0.0)), terms.neg_elbo.mean())


def test_a_schedule_on_named_terms_weights_those_alone():
    model = small_model("vrae_sa")
    terms = model(*batch())
    weights = Constant(value=0.0, terms=["z_t"]).weights(0, 0.0)
    torch.testing.assert_close(model.objective(terms, weights), (terms.nll + terms.kl["z_enc"]).mean())


@pytest.mark.parametrize("preset, schedule, unknown", [
    ("vrae", Linear(terms=["z_enc", "z_t"]), "'z_t'"),
    ("lstm", TwoPhase(), "'z_enc'"),
    ("vrae_sa", TwoPhase(aux_terms=["context_prediction"]), "'context_prediction'"),
])
def test_a_schedule_on_a_term_the_model_does_not_have_is_refused(preset, schedule, unknown):
    model = small_model(preset)
    terms = model(*batch())
    kl_terms = ", ".join(model.kl_terms) or "none"
    with pytest.raises(CompositionError, match=(
            rf"the weight schedule \(training.TrainingSettings.kl_schedule\) weights {unknown}, which this model does "
            rf"not have: its KL terms are {kl_terms} and its aux losses none. Bind the schedule to those")):
        model.objective(terms, schedule.weights(0, 0.0))


# -- the example of a plugin aux loss that declares its requirement -------------------------------------------------
COSINE_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "context_cosine" / "vrae_sa_cosine.gin"


def test_the_example_aux_loss_trains_with_the_attentive_decoder_and_is_refused_another(tmp_path, monkeypatch):
    """examples/context_cosine/: one file and a gin file. Two short epochs on a small synthetic instance lower its
    term (it lies in [0, 2] a step); with the LSTM decoder, which does not provide the context, it is refused."""
    with isolated_registrations(monkeypatch):
        monkeypatch.syspath_prepend(str(COSINE_EXAMPLE.parent))
        run = train_run([str(COSINE_EXAMPLE)], "synthetic", tmp_path / "run", bindings=[
            *SMALL, "training.TrainingSettings.checkpoint_every = 0", "training.TrainingSettings.batch_size = 16",
            "training.TrainingSettings.lr = 1e-2"], epochs=2, progress=False,
            dataset_options={"components": 2, "states": 4, "words": 30, "train_size": 160, "valid_size": 32,
                             "test_size": 32})
        first, last = (row["train_aux_context_cosine"] for row in (run.history[0], run.history[-1]))
        assert 0 < last < first
        with pytest.raises(UserError, match="aux loss 'context_cosine' needs a decoder that provides context_prior"):
            parse_config([str(COSINE_EXAMPLE)], [*SMALL, "models.SeqVAE.decoder = @decoders.lstm"])
            build_model(**IDS)
