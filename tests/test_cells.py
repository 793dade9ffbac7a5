"""Recurrence cells of the stochastic decoders: a GRU cell in place of the LSTM learns a small corpus, gives
IW-NLL <= ELBO and attention maps over the sentence's words; cells are chosen by name and a new one registers with
one decorator. (No look-ahead, generation and padding: tests/test_models.py runs its decoder tests on the GRU
decoders too; the LSTM's packed recurrence against the equations: tests/test_fast_path.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqvae_zoo import build_model, parse_config
from seqvae_zoo.data import load_dataset
from seqvae_zoo.data.batching import collate
from seqvae_zoo.data.vocab import Vocabulary
from seqvae_zoo.cells.base import RecurrentCell
from seqvae_zoo.cells.gru import GRUCell
from seqvae_zoo.registry import CELLS
from seqvae_zoo.errors import UserError
from seqvae_zoo.evaluation.importance import importance_log_likelihood

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gru_attentive" / "vrae_sa_gru.gin"
VOCAB, PAD, BOS, EOS, UNK = 23, 0, 1, 2, 3
SMALL = ["EMBEDDING = 12", "HIDDEN = 16", "LATENT = 5"]
GRU_DECODERS = {
    "stochastic": (["vrae"], ["models.SeqVAE.decoder = @decoders.stochastic", 'decoders.stochastic.cell = "gru"']),
    "attentive": ([str(EXAMPLE)], []),
}


def small_model(configs: list[str], bindings: list[str]):
    parse_config(configs, SMALL + bindings)
    torch.manual_seed(0)
    return build_model(vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, unk_id=UNK, eos_id=EOS).double()


def sentences(lengths: list[int], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.full((len(lengths), max(lengths)), PAD)
    for row, length in enumerate(lengths):
        tokens[row, :length - 1] = torch.randint(UNK + 1, VOCAB, (length - 1,), generator=generator)
        tokens[row, length - 1] = EOS
    return tokens


def test_the_gru_cell_is_torchs_gru_cell():
    """The cell's step from gate pre-activations is nn.GRUCell's, given the same weights."""
    torch.manual_seed(1)
    reference = torch.nn.GRUCell(5, 4).double()
    inputs, h = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    (got,) = GRUCell(4).step(inputs @ reference.weight_ih.t() + reference.bias_ih,
                             h @ reference.weight_hh.t() + reference.bias_hh, (h,))
    torch.testing.assert_close(got, reference(inputs, h))


@pytest.mark.parametrize("decoder", list(GRU_DECODERS))
def test_a_gru_decoder_carries_h_t_alone_through_three_gates(decoder):
    model = small_model(*GRU_DECODERS[decoder])
    assert isinstance(model.decoder.cell, GRUCell)
    assert model.decoder.input_projection.out_features == 3 * 16  # reset, update, new
    (initial,) = model.decoder.start(None, 2)
    assert initial.shape == (2, 16) and torch.all(initial == 0)


@pytest.mark.parametrize("decoder", list(GRU_DECODERS))
def test_a_gru_decoders_importance_weighted_nll_is_at_most_its_elbo(decoder):
    model = small_model(*GRU_DECODERS[decoder]).eval()
    lengths = [6, 4, 7, 5]
    tokens = sentences(lengths, seed=3)
    lengths = torch.tensor(lengths)
    draws = 50
    torch.manual_seed(4)
    with torch.no_grad():
        neg_elbo = model(tokens.repeat(draws, 1), lengths.repeat(draws)).neg_elbo.view(draws, -1).mean(0)
        iw_nll = -importance_log_likelihood(model, tokens, lengths, draws, 2 ** 26)
    assert torch.all(iw_nll <= neg_elbo)
    assert torch.all(neg_elbo - iw_nll > 1e-3)  # per-step latents: the bound does tighten


def test_the_gru_attentive_decoders_attention_covers_the_sentences_words():
    model = small_model(*GRU_DECODERS["attentive"]).eval()
    lengths = torch.tensor([6, 3])
    with torch.no_grad():
        attention = model(sentences([6, 3], seed=5), lengths, return_attention=True).attention
    assert attention.shape == (2, 6, 6)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 6, dtype=torch.float64))
    assert torch.all(attention[1, :, 3:] == 0)  # the encoder's padding gets no weight
    assert attention[0, :, :].std(dim=-1).min() > 0  # scores that depend on the states, not a uniform average


def test_the_gru_attentive_example_learns_a_small_corpus_and_generates():
    """The example's gin file through the Python API: on 16 sentences of the synthetic corpus, 30 Adam steps take
    the -ELBO well below its start, and the trained model generates from the prior."""
    corpus = load_dataset("synthetic", components=2, states=4, words=30, train_size=16, valid_size=8, test_size=8)
    vocab = Vocabulary.build(corpus.splits["train"])
    batch = collate(vocab.encode_all(corpus.splits["train"]), vocab.pad_id)
    parse_config([str(EXAMPLE)], ["EMBEDDING = 16", "HIDDEN = 16", "LATENT = 4"])
    torch.manual_seed(0)
    model = build_model(vocab_size=vocab.size, pad_id=vocab.pad_id, bos_id=vocab.bos_id, unk_id=vocab.unk_id,
                        eos_id=vocab.eos_id)
    assert isinstance(model.decoder.cell, GRUCell)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model.objective(model(batch.tokens, batch.lengths), {})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    model.eval()
    state, tokens = model.decoder.start(None, 4), torch.full((4,), vocab.bos_id)
    z_enc = model.latent_prior.sample(4)
    for _ in range(5):
        logits, state = model.decoder.step(tokens, state, z_enc, "prior_sample")
        assert logits.shape == (4, vocab.size) and torch.all(torch.isfinite(logits))
        tokens = logits.argmax(-1)


def test_an_unknown_cell_is_refused_with_the_known_ones():
    with pytest.raises(UserError, match=r"unknown cell 'gur'.*gru, lstm"):
        small_model(["vrae_sa"], ['decoders.attentive.cell = "gur"'])


def test_a_new_cell_is_one_registered_class(monkeypatch):
    """A cell registered from outside the package runs in the decoders (here an Elman cell, h_t = tanh(sum of
    the gates)); a second registration under a name in use, or a class that is no cell, is refused."""
    from plugin_fixture import isolated_registrations

    with isolated_registrations(monkeypatch):
        @CELLS.register("elman")
        class ElmanCell(RecurrentCell):
            gates_per_unit = 1

            def step(self, input_gates, hidden_gates, state):
                return (torch.tanh(input_gates + hidden_gates),)

        model = small_model(["vrae_sa"], ['decoders.attentive.cell = "elman"'])
        terms = model(sentences([5, 3], seed=6), torch.tensor([5, 3]))
        assert isinstance(model.decoder.cell, ElmanCell) and torch.all(torch.isfinite(terms.neg_elbo))
        with pytest.raises(UserError, match="cells 'elman' is already registered"):
            CELLS.register("elman")(ElmanCell)
        with pytest.raises(UserError, match="must subclass"):
            CELLS.register("other")(dict)
