"""Mixed precision: a bfloat16 training step computes the float32 step's loss and gradients to bfloat16's rounding,
keeps float32 master weights and optimizer state, learns; evaluation is float32 whatever the training precision; a
device without bfloat16 products and a resume in another precision are refused with one clear message.

Tolerances. bfloat16 keeps 8 significant bits: its machine epsilon is EPS = 2^-8 (a rounded operand is off by at most
EPS / 2, relatively). A product of rounded operands, accumulated in float32, is off by about EPS relatively; a loss
sums thousands of such products with errors of both signs, so it moves by far less than EPS; a gradient passes through
a few products in a row (the recurrence's backward, the output layer's two), so its error norm relative to its norm is
held to 8 EPS (about 3 %). Float32 rounding is 2^-24: a difference above EPS / 256 shows the products did run in
bfloat16, so the comparison cannot pass by computing float32 twice.
"""

from __future__ import annotations

import json

import pytest
import torch

from seqvae_zoo import parse_config
from seqvae_zoo.bench.suite import load_suite
from seqvae_zoo.cli import main
from seqvae_zoo.data.batching import make_loader
from seqvae_zoo.data.loading import load_dataset
from seqvae_zoo.data.vocab import build_vocabulary
from seqvae_zoo.evaluation import evaluate_corpus
from seqvae_zoo.kernels import precision as precision_module
from seqvae_zoo.kernels import output as output_module
from seqvae_zoo.kernels.output import linear_cross_entropy
from seqvae_zoo.kernels.precision import PrecisionError, autocast, bf16_supported, check_precision
from seqvae_zoo.training.checkpoint import read_checkpoint
from seqvae_zoo.training.trainer import Trainer, TrainingSettings

from test_fast_path import SETUPS, batch, small_model
from test_training import DEVICES, SMALL_DATA, TINY, tiny_run

EPS = 2.0 ** -8  # bfloat16's machine epsilon
needs_bf16 = pytest.mark.skipif(not bf16_supported(torch.device("cpu")),
                                reason="this CPU has no native bfloat16 products")


def loss_and_gradients(model, tokens, lengths, precision: str):
    """The training loss of one batch and every parameter's gradient, with the same dropout masks and noise."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    with autocast(precision, tokens.device):
        loss = model.objective(model(tokens, lengths), {})
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    value, reference = value.detach(), reference.detach()
    return float((value - reference).norm() / reference.norm().clamp_min(1e-30))


@needs_bf16
@pytest.mark.parametrize("setup", SETUPS)
def test_bf16_loss_and_gradients_match_float32_to_bfloat16_rounding(setup):
    """For the deterministic (lstm, vrae), stochastic and attentive decoders: the fast path (packed recurrence with
    its backward, latent heads, fused output layer) in bfloat16 against the same step in float32."""
    model = small_model(setup).float().train()
    tokens, lengths = batch()
    loss32, grads32 = loss_and_gradients(model, tokens, lengths, "fp32")
    loss16, grads16 = loss_and_gradients(model, tokens, lengths, "bf16")
    assert loss16.dtype == torch.float32
    assert abs(float(loss16 - loss32)) <= EPS * abs(float(loss32))
    assert grads16.keys() == grads32.keys()
    errors = {name: relative_error(grads16[name], grads32[name]) for name in grads32}
    assert all(grads16[name].dtype == torch.float32 for name in grads16)
    assert max(errors.values()) <= 8 * EPS, errors
    # the products did run in bfloat16: the output layer (fused kernel) and, with per-step latents, the recurrence
    ran_low = ["decoder.output.weight_t"] + (["decoder.recurrent.weight", "decoder.latent_projection.weight"]
                                           if setup not in ("lstm", "vrae") else [])
    assert all(errors[name] > EPS / 256 for name in ran_low), errors


@needs_bf16
def test_bf16_fused_output_layer_matches_float32():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(200, 48, generator=generator, requires_grad=True)
    weight = (torch.randn(300, 48, generator=generator) / 7).requires_grad_()
    bias = torch.randn(300, generator=generator).requires_grad_()
    targets = torch.randint(0, 300, (200,), generator=generator)
    results = {}
    for precision in ("fp32", "bf16"):
        with autocast(precision, "cpu"):
            nll = linear_cross_entropy(hidden, weight, bias, targets)
        results[precision] = (nll, *torch.autograd.grad(nll.sum(), (hidden, weight, bias)))
    assert all(t.dtype == torch.float32 for t in results["bf16"])
    for value, reference in zip(results["bf16"], results["fp32"]):
        assert EPS / 256 < relative_error(value, reference) <= 8 * EPS


@needs_bf16
def test_bf16_fused_output_layer_gives_the_same_bits_whatever_its_row_blocks(monkeypatch):
    """From bfloat16 logits the softmax and P - Y are formed block of rows by block of rows, each in cache: a row's
    loss and gradients are its own, so blocks of 64 rows (the last one short) give the bits of one block of all,
    rows whose target probability underflows (recomputed from their logits) included."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(200, 48, generator=generator)
    wide = torch.tensor([0, 1, 2, 130, 131, 132])  # in the first block of 64 and the third
    hidden[wide] *= 40  # logits hundreds apart: the target's probability underflows in some of these rows
    weight = (torch.randn(300, 48, generator=generator) / 7).requires_grad_()
    bias = torch.randn(300, generator=generator).requires_grad_()
    targets = torch.randint(0, 300, (200,), generator=generator)
    with torch.no_grad():  # in those rows, the least likely word as the target
        targets[wide] = (hidden[wide] @ weight.t() + bias).argmin(1)
    hidden.requires_grad_()
    results = {}
    for elements, rows in ((64 * 300, 64), (10 ** 9, 3333312)):
        monkeypatch.setattr(output_module, "CONVERTED_BLOCK_ELEMENTS", elements)
        assert output_module.converted_block_rows(300) == rows
        with autocast("bf16", "cpu"):
            nll = linear_cross_entropy(hidden, weight, bias, targets)
        results[elements] = (nll, *torch.autograd.grad((nll * torch.linspace(0.5, 2, 200)).sum(),
                                                       (hidden, weight, bias)))
    assert all(torch.equal(a, b) for a, b in zip(*results.values()))
    with torch.no_grad():
        logits = (hidden[wide] @ weight.t() + bias).double()
        exact = torch.logsumexp(logits, 1) - logits.gather(1, targets[wide, None])[:, 0]
    assert exact[:3].max() > 90 and exact[3:].max() > 90  # probabilities below float32's normal range, exp(-87.3)
    assert torch.allclose(results[64 * 300][0][wide].double(), exact, rtol=0.05)


# -- training -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    if not bf16_supported(torch.device("cpu")):
        pytest.skip("this CPU has no native bfloat16 products")
    return tiny_run(tmp_path_factory.mktemp("bf16"), bindings=['training.TrainingSettings.precision = "bf16"',
                                                               "training.TrainingSettings.lr = 1e-2"])


def test_a_bf16_run_learns_and_keeps_float32_master_weights_and_adam_state(tmp_path, bf16_run):
    untrained = trainer_for(tmp_path, "fp32").validate().summary("valid_")["valid_neg_elbo"]  # the run's first weights
    history = [row["valid_neg_elbo"] for row in bf16_run.history]
    assert history[1] < history[0] < untrained and history[1] < untrained - 3, (untrained, history)
    state = read_checkpoint(bf16_run.out_dir / "checkpoint.pt")
    assert state["precision"] == "bf16" and bf16_run.precision == "bf16"  # the bench record's
    assert json.loads((bf16_run.out_dir / "progress.json").read_text())["precision"] == "bf16"
    assert "TrainingSettings.precision = 'bf16'" in (bf16_run.out_dir / "config.gin").read_text()
    assert all(t.dtype == torch.float32 for t in state["model"].values() if t.is_floating_point())
    moments = [t for entry in state["optimizer"]["state"].values() for key, t in entry.items() if key != "step"]
    assert moments and all(t.dtype == torch.float32 for t in moments)
    assert all(p.dtype == torch.float32 for p in bf16_run.model.parameters())


def trainer_for(out, precision: str, model=None) -> Trainer:
    """A trainer of a tiny vrae_sa_aux on the small synthetic corpus (the bindings of ``tiny_run``)."""
    parse_config(["vrae_sa_aux"], TINY)
    corpus = load_dataset("synthetic", **SMALL_DATA)
    vocab = build_vocabulary(corpus)
    if model is None:
        from seqvae_zoo import build_model
        torch.manual_seed(0)
        model = build_model(vocab.size, vocab.pad_id, vocab.bos_id, vocab.unk_id, vocab.eos_id)
    loaders = [make_loader(vocab.encode_all(corpus.splits[split]), 16, vocab.pad_id, shuffle=False)
               for split in ("train", "valid")]
    return Trainer(model, *loaders, out, TrainingSettings(precision=precision), progress=False)


@needs_bf16
def test_validation_and_evaluation_are_float32_whatever_the_training_precision(tmp_path, bf16_run):
    bf16 = trainer_for(tmp_path / "bf16", "bf16", bf16_run.model)
    fp32 = trainer_for(tmp_path / "fp32", "fp32", bf16_run.model)
    assert bf16.validate() == fp32.validate()
    # after a bfloat16 step the model scores as a fresh copy of its weights that never trained does
    bf16.train(max_steps=1)
    corpus = load_dataset("synthetic", **SMALL_DATA)
    copy = trainer_for(tmp_path / "copy", "fp32").model
    copy.load_state_dict(bf16.model.state_dict())
    scored = [evaluate_corpus(model, bf16_run.vocab, corpus, "valid", iw_samples=3, seed=0)
              for model in (bf16.model, copy)]
    for result in scored:
        del result["seconds"]
    assert scored[0] == scored[1]


# -- refusals ---------------------------------------------------------------------------------------------------
def test_a_cpu_without_bfloat16_products_is_refused_at_start(tmp_path, monkeypatch, capsys):
    with pytest.raises(PrecisionError, match=r"no AVX512-BF16 or AMX.*train in float32 \(--precision fp32"):
        check_precision("bf16", "cpu", supported=lambda device: False)
    check_precision("fp32", "cpu", supported=lambda device: False)  # float32 needs nothing
    monkeypatch.setattr(precision_module, "bf16_supported", lambda device: False)
    with pytest.raises(PrecisionError, match="no AVX512-BF16 or AMX"):
        trainer_for(tmp_path / "t", "bf16")
    assert main(["train", "vrae", "--data", "synthetic", "--precision", "bf16", "--max-steps", "1",
                 "--out", str(tmp_path / "cli")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--precision fp32" in error, error
    assert not (tmp_path / "cli" / "checkpoint.pt").exists()


def test_an_unknown_precision_is_refused():
    with pytest.raises(PrecisionError, match=r"one of 'fp32', 'bf16', not 'fp16'"):
        check_precision("fp16", "cpu")


@needs_bf16
def test_resuming_in_another_precision_is_refused(tmp_path, capsys):
    tiny_run(tmp_path / "run", max_steps=2)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    assert read_checkpoint(checkpoint)["precision"] == "fp32"
    with pytest.raises(PrecisionError, match=r"trained in precision 'fp32'.*asks for 'bf16'.*--precision fp32"):
        trainer_for(tmp_path / "other", "bf16").resume(checkpoint)
    trainer_for(tmp_path / "same", "fp32").resume(checkpoint)  # its own precision resumes
    assert main(["train", "--resume", "--precision", "bf16", "--out", str(tmp_path / "run")]) == 2
    assert "leave out --precision" in capsys.readouterr().err


@pytest.mark.parametrize("device", [d for d in DEVICES if d != "cpu"])
def test_cuda_bf16_step_matches_float32(device):
    model = small_model("vrae_sa_aux").float().train().to(device)
    tokens, lengths = (t.to(device) for t in batch())
    loss32, grads32 = loss_and_gradients(model, tokens, lengths, "fp32")
    loss16, grads16 = loss_and_gradients(model, tokens, lengths, "bf16")
    assert abs(float(loss16 - loss32)) <= EPS * abs(float(loss32))
    assert max(relative_error(grads16[name], grads32[name]) for name in grads32) <= 8 * EPS


# -- the suite ----------------------------------------------------------------------------------------------------
def test_the_precision_suite_runs_each_model_in_both_precisions_and_nothing_else_differs():
    suite = load_suite("precision-ptb")
    short = load_suite("ptb-short")
    assert (suite.datasets, suite.epochs, suite.bindings, suite.evaluation) == \
        (short.datasets, short.epochs, short.bindings, short.evaluation)
    assert suite.seeds == [0, 1]
    runs = {}
    for model in suite.models:
        parse_config(list(model.configs), [*suite.bindings, *model.bindings])
        runs.setdefault(model.configs, {})[TrainingSettings().precision] = model
    assert set(runs) == {("vrae",), ("vrae_sa_aux",)}
    for pair in runs.values():
        assert set(pair) == {"fp32", "bf16"}
        assert [b for b in pair["bf16"].bindings if "precision" not in b] == \
            [b for b in pair["fp32"].bindings if "precision" not in b]
    assert {column.metric for column in suite.columns} == {"iw.nll", "paper.nll", "paper.kl", "paper.ppl",
                                                           "training.wall_seconds"}
