"""The LSTM decoder's optional dropout of the states before the softmax: off by default (the paper drops out only the
decoder's input), on only in training, where it zeroes about p of the states and scales the rest by 1 / (1 - p)."""

from __future__ import annotations

import torch

from seqvae_zoo import build_model, parse_config

VOCAB, PAD, BOS, EOS, UNK = 23, 0, 1, 2, 3


def lstm_model(output_dropout: float | None):
    bindings = ["EMBEDDING = 12", "HIDDEN = 64", "decoders.lstm.input_dropout = 0.0"]
    if output_dropout is not None:
        bindings.append(f"decoders.lstm.output_dropout = {output_dropout}")
    parse_config(["lstm"], bindings)
    torch.manual_seed(0)
    return build_model(vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, unk_id=UNK, eos_id=EOS).double()


def batch():
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(4, VOCAB, (8, 9), generator=generator)
    lengths = torch.tensor([9, 9, 7, 6, 5, 3, 2, 1])
    tokens[torch.arange(8), lengths - 1] = EOS
    return tokens, lengths


def test_output_dropout_is_off_by_default_and_off_in_evaluation():
    tokens, lengths = batch()
    plain, dropped = lstm_model(None).eval(), lstm_model(0.5).eval()
    assert plain.decoder.output_dropout.p == 0.0
    assert torch.equal(plain(tokens, lengths).nll, dropped(tokens, lengths).nll)  # same weights, no dropout in eval


def test_output_dropout_drops_the_states_before_the_softmax_in_training():
    tokens, lengths = batch()
    model = lstm_model(0.5).train()
    inputs = model.decoder_inputs(tokens, torch.ones_like(tokens, dtype=torch.bool))
    states, _ = model.decoder.rnn(model.decoder._inputs(inputs, None))
    hidden = model.decoder(inputs, lengths, None, None).hidden
    zeroed = hidden == 0
    assert 0.4 < zeroed.double().mean().item() < 0.6
    assert torch.allclose(hidden[~zeroed], 2 * states[~zeroed])
    assert model(tokens, lengths).nll.sum() != model.eval()(tokens, lengths).nll.sum()
