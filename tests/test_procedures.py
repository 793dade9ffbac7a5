"""Training procedures: each one's defining behaviour, exact resume, and one clear message for a bad choice."""

from __future__ import annotations

import copy
import gc
import subprocess
import weakref
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from seqvae_zoo.kernels.precision import autocast, bf16_supported
from seqvae_zoo.presets import ConfigError, parse_config
from seqvae_zoo.schedules.base import EVERY_KL_TERM
from seqvae_zoo.training.checkpoint import read_checkpoint, save_checkpoint
from seqvae_zoo.training.procedures.base import ProcedureError
from seqvae_zoo.training.procedures.svi import Refinement, refine_posterior
from seqvae_zoo.training.run import train_run
from seqvae_zoo.training.stopping import StopRequested
from seqvae_zoo.training.trainer import Trainer, model_objective
from test_bench_campaign import StopAfter  # asks to stop at its n-th consultation (after each procedure step)
from test_distributed import ENV, _torchrun, _train_arguments, assert_same_epoch_rows, assert_same_training_state
from test_distributed import TINY as DISTRIBUTED_TINY
from test_distributed import deterministic  # noqa: F401 (a fixture)

TINY = ["EMBEDDING = 16", "HIDDEN = 16", "LATENT = 4", "training.TrainingSettings.batch_size = 16",
        "training.TrainingSettings.checkpoint_every = 4", "kl_schedules.linear.warmup_epochs = 1.0"]
SMALL_DATA = {"train_size": 64, "valid_size": 16, "test_size": 16}  # 4 batches an epoch
AGGRESSIVE = ["training.TrainingSettings.procedure = @procedures.aggressive()",
              "procedures.aggressive.max_inner_steps = 2", "procedures.aggressive.window = 1"]
PRETRAIN_RESET = ["training.TrainingSettings.procedure = @procedures.pretrain_reset()",
                  "procedures.pretrain_reset.pretrain_epochs = 1",
                  "models.SeqVAE.regularizers = [@regularizers.free_bits()]", "regularizers.free_bits.nats = 2.0"]
SVI = ["training.TrainingSettings.procedure = @procedures.svi()", "procedures.svi.steps = 2",
       "procedures.svi.lr = 0.1"]
PROCEDURES = {"aggressive": AGGRESSIVE, "pretrain_reset": PRETRAIN_RESET, "svi": SVI}


def tiny_run(out: Path, bindings=(), preset: str = "vrae", **kwargs):
    kwargs.setdefault("epochs", 2)
    return train_run([preset], "synthetic", out, bindings=[*TINY, *bindings], progress=False,
                     dataset_options=SMALL_DATA, **kwargs)


def initial_parameters(out: Path, bindings=()) -> dict[str, torch.Tensor]:
    """The parameters a run of this config starts from."""
    model = tiny_run(out, bindings, max_steps=0).model
    return {name: value.detach().clone() for name, value in model.named_parameters()}


class OptimizerSteps:
    """Which of the model's parameters (by name) each optimizer step changed."""

    def __init__(self):
        self.changed: list[set[int]] = []
        self._before: list[torch.Tensor] = []

    def __enter__(self) -> OptimizerSteps:
        self._handles = [register_optimizer_step_pre_hook(self._pre),
                         register_optimizer_step_post_hook(self._post)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _parameters(self, optimizer) -> list[torch.Tensor]:
        return [p for group in optimizer.param_groups for p in group["params"]]

    def _pre(self, optimizer, args, kwargs) -> None:
        self._before = [p.detach().clone() for p in self._parameters(optimizer)]

    def _post(self, optimizer, args, kwargs) -> None:
        self.changed.append({i for i, (p, old) in enumerate(zip(self._parameters(optimizer), self._before))
                             if not torch.equal(p, old)})


def plain(value):
    """``value`` with its tensors as lists, to compare with ==."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value.tolist() if isinstance(value, torch.Tensor) else value


def assert_same_rows(left: list[dict], right: list[dict]) -> None:
    assert len(left) == len(right)
    for row_left, row_right in zip(left, right):
        assert row_left.keys() == row_right.keys()
        assert {k: v for k, v in row_left.items() if k not in ("seconds", "tokens_per_s")} == \
               {k: v for k, v in row_right.items() if k not in ("seconds", "tokens_per_s")}


# -- aggressive ---------------------------------------------------------------------------------------------------
BATCHES = 4  # an epoch of SMALL_DATA


class Update(NamedTuple):
    kind: str  # "e": encoder only, "d": every other parameter, "s": the whole model
    sentences: frozenset  # the batch's sentences, as tuples of token ids
    weight: float  # the KL weight of z_enc the update used
    trainer: Trainer


def _kind(trainer: Trainer, parameters) -> str:
    if parameters is None:
        return "s"
    return "e" if {id(p) for p in parameters} == {id(p) for p in trainer.model.encoder.parameters()} else "d"


def _sentences(tokens: torch.Tensor, lengths: torch.Tensor) -> frozenset:
    return frozenset(tuple(row[:length].tolist()) for row, length in zip(tokens, lengths))


@pytest.fixture()
def updates(monkeypatch) -> list[Update]:
    """Every optimizer update the trainer makes, in order."""
    made = []
    original = Trainer.update

    def update(trainer, batch, loss=model_objective, parameters=None):
        made.append(Update(_kind(trainer, parameters), _sentences(batch.tokens, batch.lengths),
                           trainer.model.term_weights(trainer.weights())["z_enc"], trainer))
        return original(trainer, batch, loss, parameters)

    monkeypatch.setattr(Trainer, "update", update)
    return made


def epoch_batches(trainer: Trainer, epoch: int) -> list[frozenset]:
    """The sentences of each batch of ``epoch``, in the order the sampler gives them."""
    sentences = trainer.train_loader.dataset
    return [frozenset(tuple(sentences[i]) for i in batch) for batch in trainer.sampler.batches(epoch)]


def test_every_batch_of_an_aggressive_epoch_gets_one_decoder_step_after_its_inner_loop(tmp_path, updates):
    """The epoch's updates, as the optimizer made them: one decoder-only step per batch, on the batches of the
    epoch in their order, each after an inner loop of encoder-only steps that starts on the same batch and draws
    the rest from the training split; no step moves both parts; each epoch's aggressive flag is the rule applied to
    the validation MIs before it."""
    with OptimizerSteps() as all_steps:
        run = tiny_run(tmp_path / "run", AGGRESSIVE, epochs=3)
    previous, active = 0.0, True
    for epoch_row in run.history:
        assert epoch_row["aggressive"] == float(active)
        assert (epoch_row["encoder_only_steps"] > 0) == active
        if active and epoch_row["valid_mi"] <= previous:
            active = False
        previous = epoch_row["valid_mi"]

    names = [name for name, _ in run.model.named_parameters()]
    encoder = {i for i, name in enumerate(names) if name.startswith("encoder.")}
    assert encoder and len(encoder) < len(names)
    row = run.history[0]
    assert row["aggressive"] == 1.0
    steps = all_steps.changed[:int(row["step"])]
    assert len(updates) >= len(steps) == row["step"]
    kinds = "".join(update.kind for update in updates[:len(steps)])
    for kind, changed in zip(kinds, steps):  # an inner step leaves the decoder as it is, a decoder step the encoder
        assert changed and (changed <= encoder if kind == "e" else not changed & encoder), kind
    assert kinds.count("d") == BATCHES and kinds.count("e") == row["encoder_only_steps"]
    loops = kinds.split("d")
    assert loops[-1] == "" and len(loops) == BATCHES + 1
    # window 1: the first window has none before it to compare with, so each loop runs to the cap of 2
    assert all(loop == "ee" for loop in loops[:-1])

    batches = epoch_batches(updates[0].trainer, 0)
    first_epoch = updates[:len(steps)]
    assert [update.sentences for update in first_epoch if update.kind == "d"] == batches
    for loop in range(BATCHES):
        first, drawn, decoder = first_epoch[3 * loop:3 * loop + 3]
        assert first.sentences == decoder.sentences and drawn.sentences in batches
        assert first.weight == drawn.weight == decoder.weight  # the KL weight is the batch's


def test_inner_batches_are_drawn_uniformly_with_replacement_from_the_training_split(tmp_path, updates):
    tiny_run(tmp_path / "run", AGGRESSIVE, max_steps=1)
    trainer = updates[0].trainer
    batches = epoch_batches(trainer, trainer.epoch)
    generator = torch.Generator().manual_seed(0)
    draws = [_sentences(*trainer.random_batch(generator)[:2]) for _ in range(2000)]
    counts = [draws.count(batch) for batch in batches]
    assert sum(counts) == len(draws)  # every draw is a batch of the split, padded as the stream's
    assert all(abs(count / len(draws) - 1 / BATCHES) < 0.04 for count in counts), counts
    again = torch.Generator().manual_seed(0)
    assert [_sentences(*trainer.random_batch(again)[:2]) for _ in range(20)] == draws[:20]


@pytest.mark.parametrize("script, loop", [
    ([5.0] * 3 + [4.0] * 3 + [4.0] * 3 + [1.0] * 3, 9),  # the third window is no lower than the second: stop
    ([5.0] * 3 + [6.0] * 3 + [1.0] * 6, 6),  # the second window is higher than the first: stop
    ([10.0 - count for count in range(12)], 12),  # always falling: the cap
])
def test_the_inner_loop_stops_when_the_windowed_loss_stops_falling_or_at_the_cap(tmp_path, monkeypatch, script,
                                                                                  loop):
    """The inner steps' -ELBO per token replaced by a script of the step's place in its loop: each loop ends at
    the first window of 3 steps whose loss is no lower than the window's before, or after 12 steps."""
    original = Trainer.update
    position = {"step": 0}

    def scripted(trainer, batch, loss=model_objective, parameters=None):
        terms = original(trainer, batch, loss, parameters)
        if _kind(trainer, parameters) == "e":
            terms.nll = script[position["step"]] * terms.tokens.float()
            terms.kl = {name: torch.zeros_like(value) for name, value in terms.kl.items()}
            position["step"] += 1
        else:
            position["step"] = 0
        return terms

    monkeypatch.setattr(Trainer, "update", scripted)
    bindings = ["training.TrainingSettings.procedure = @procedures.aggressive()",
                "procedures.aggressive.max_inner_steps = 12", "procedures.aggressive.window = 3"]
    run = tiny_run(tmp_path / "run", bindings, epochs=1)
    assert run.history[0]["encoder_only_steps"] == BATCHES * loop
    assert run.history[0]["step"] == BATCHES * (loop + 1)


def test_the_kl_schedule_of_aggressive_training_follows_the_batches_not_the_updates(tmp_path):
    """However many inner steps, the epoch ends with the KL weight a standard run has at its end."""
    standard = tiny_run(tmp_path / "standard", epochs=1)
    aggressive = tiny_run(tmp_path / "aggressive", AGGRESSIVE, epochs=1)
    assert aggressive.history[0]["step"] > standard.history[0]["step"] == BATCHES
    assert aggressive.history[0]["weight_z_enc"] == standard.history[0]["weight_z_enc"] == 0.75


def test_aggressive_training_ends_when_the_validation_mi_stops_rising(tmp_path):
    """With a learning rate of 0 the posteriors, and so the MI, stay the same: the first epoch's MI rises above
    0, the second's does not rise above the first's, and training is standard from the third epoch on."""
    run = tiny_run(tmp_path / "run", [*AGGRESSIVE, "training.TrainingSettings.lr = 0.0"], epochs=3)
    mi = [row["valid_mi"] for row in run.history]
    assert mi[0] > 0 and mi[0] == mi[1] == mi[2]
    assert [row["aggressive"] for row in run.history] == [1.0, 1.0, 0.0]
    assert run.history[1]["encoder_only_steps"] > 0 and run.history[2]["encoder_only_steps"] == 0
    assert run.history[2]["step"] - run.history[1]["step"] == BATCHES  # standard: one step per batch


# -- pretrain, then reset ----------------------------------------------------------------------------------------
def test_pretrain_reset_reinitializes_the_decoder_and_keeps_the_encoder(tmp_path):
    initial = initial_parameters(tmp_path / "initial", PRETRAIN_RESET)
    run = tiny_run(tmp_path / "run", PRETRAIN_RESET, max_steps=4)  # to the end of the pretraining epoch
    assert run.history[0]["pretraining"] == 1.0 and run.history[0]["weight_z_enc"] == 0.0
    saved = read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    names = list(initial)
    for name, value in saved["model"].items():
        if name.startswith("decoder."):
            assert torch.equal(value, initial[name]), f"{name} was not re-initialized"
        elif name.startswith("encoder."):
            assert not torch.equal(value, initial[name]), f"{name} did not learn in pretraining"
    # the decoder's Adam moments are gone; the encoder's are kept
    state = saved["optimizer"]["state"]
    assert not any(names[i].startswith("decoder.") for i in state)
    assert any(names[i].startswith("encoder.") for i in state)

    train_run([], "synthetic", tmp_path / "run", resume=True, progress=False, max_steps=5)
    state = read_checkpoint(tmp_path / "run" / "checkpoint.pt")["optimizer"]["state"]
    steps = {names[i]: int(s["step"]) for i, s in state.items()}
    assert all(step == 1 for name, step in steps.items() if name.startswith("decoder."))
    assert all(step == 5 for name, step in steps.items() if name.startswith("encoder."))


def test_pretrain_reset_trains_with_kl_weight_0_then_with_the_schedule_and_free_bits(tmp_path):
    run = tiny_run(tmp_path / "run", PRETRAIN_RESET, epochs=2)
    assert [row["pretraining"] for row in run.history] == [1.0, 0.0]
    assert run.history[0]["weight_z_enc"] == 0.0 and run.history[1]["weight_z_enc"] == 1.0


def test_pretrain_reset_refuses_a_model_without_free_bits(tmp_path):
    with pytest.raises(ProcedureError, match=r"add models\.SeqVAE\.regularizers = \[@regularizers\.free_bits\(\)\]"):
        tiny_run(tmp_path / "run", PRETRAIN_RESET[:2])


# -- SVI ----------------------------------------------------------------------------------------------------------
def test_svi_refinement_raises_each_sentences_elbo(tmp_path):
    run = tiny_run(tmp_path / "run", max_steps=0)
    model = run.model.eval()
    tokens, lengths = next(iter(_valid_loader(run)))
    initial = model.encoder(tokens, lengths).posterior
    refined = refine_posterior(model, tokens, lengths, initial, {EVERY_KL_TERM: 1.0}, steps=10, lr=1.0,
                               momentum=0.5, max_grad_norm=5.0)
    assert not torch.equal(refined.mean, initial.mean)

    def mean_neg_elbo(posterior, draws: int = 200) -> torch.Tensor:  # over noise draws, the same for both
        torch.manual_seed(0)
        repeated = type(posterior)(*(value.repeat(draws, 1) for value in posterior))
        with torch.no_grad():
            terms = model(tokens.repeat(draws, 1), lengths.repeat(draws), posterior=repeated)
        return terms.neg_elbo.view(draws, -1).mean(0)

    before, after = mean_neg_elbo(initial), mean_neg_elbo(refined)
    assert (after < before).all(), (before - after)


@pytest.mark.parametrize("difference", ["central", "one-sided"])
def test_backpropagation_through_the_refinement_is_the_derivative_of_the_refined_objective(tmp_path, difference):
    """End to end (Kim et al.'s SA-VAE): the gradient the backward pass gives every parameter, encoder and decoder,
    is the derivative of the objective at the refined posterior, the refinement included, along a random direction
    (float64, clipping inactive, the steps' noise and the decoder's dropout drawn again from the same seeds), by
    either finite difference of the Hessian-vector products."""
    run = tiny_run(tmp_path / "run", max_steps=0)
    model = run.model.double().train()
    tokens, lengths = next(iter(_valid_loader(run)))
    weights = {EVERY_KL_TERM: 0.7}
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    parameters = [p for _, p in named]

    def refined_objective() -> torch.Tensor:
        torch.manual_seed(1)
        refined = refine_posterior(model, tokens, lengths, model.encoder(tokens, lengths).posterior, weights, steps=3,
                                   lr=0.5, momentum=0.5, max_grad_norm=1e6, end_to_end=True, hvp_step=1e-6,
                                   hvp_difference=difference)
        return model.objective(model(tokens, lengths, posterior=refined), weights)

    refined_objective().backward()
    grads = [p.grad.clone() for p in parameters]
    assert all(g.abs().sum() > 0 for (name, _), g in zip(named, grads) if name.startswith("encoder.")), \
        "every encoder parameter gets a gradient through the refinement"
    direction = [torch.randn_like(p) for p in parameters]
    step = 1e-6
    with torch.no_grad():
        values = []
        for sign in (1.0, -1.0):
            for p, d in zip(parameters, direction):
                p.add_(sign * step * d)
            values.append(refined_objective())
            for p, d in zip(parameters, direction):
                p.sub_(sign * step * d)
    numeric = (values[0] - values[1]) / (2 * step)
    analytic = sum((g * d).sum() for g, d in zip(grads, direction))
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-9)

    # the gradient stopped at the refined posterior is another number: the refinement's share is not negligible
    model.zero_grad()
    torch.manual_seed(1)
    stopped = refine_posterior(model, tokens, lengths, model.encoder(tokens, lengths).posterior, weights, steps=3,
                               lr=0.5, momentum=0.5, max_grad_norm=1e6)
    model.objective(model(tokens, lengths, posterior=stopped), weights).backward()
    decoder_only = sum((p.grad * d).sum() for p, d in zip(parameters, direction) if p.grad is not None)
    assert abs(float(decoder_only - analytic)) > 1e-3 * abs(float(analytic))


@pytest.mark.parametrize("difference", ["central", "one-sided"])
def test_in_float32_the_gradient_through_the_refinement_is_float64s_within_1e_4(tmp_path, monkeypatch, difference):
    """Either finite difference at the default ``hvp_step`` loses little in float32, the precision training runs
    in: 20 steps of Kim et al.'s refinement on a trained model, the same noise drawn in both precisions (dropout
    off)."""
    from seqvae_zoo.latents.gaussian import GaussianLatent

    def same_noise(self, noise=None, generator=None):  # float32's normal draws are not float64's rounded
        if noise is None:
            noise = torch.randn(self.mean.shape, generator=generator, dtype=torch.float64).to(self.mean.dtype)
        return original(self, noise)

    original = GaussianLatent.rsample
    monkeypatch.setattr(GaussianLatent, "rsample", same_noise)
    run = tiny_run(tmp_path / "run", [*SVI[:1], "procedures.svi.steps = 5"], epochs=2)
    tokens, lengths = next(iter(_valid_loader(run)))

    def gradient(model: torch.nn.Module) -> torch.Tensor:
        model.eval()
        torch.manual_seed(1)
        refined = refine_posterior(model, tokens, lengths, model.encoder(tokens, lengths).posterior,
                                   {EVERY_KL_TERM: 1.0}, steps=20, lr=1.0, momentum=0.5, max_grad_norm=5.0,
                                   end_to_end=True, hvp_difference=difference)
        model.objective(model(tokens, lengths, posterior=refined), {EVERY_KL_TERM: 1.0}).backward()
        return torch.cat([p.grad.double().flatten() for p in model.parameters()])

    reference = gradient(copy.deepcopy(run.model).double())
    single = gradient(copy.deepcopy(run.model))
    assert float((single - reference).norm() / reference.norm()) < 1e-4


@pytest.mark.parametrize("difference", ["central", "one-sided"])
def test_nothing_of_a_step_through_the_refinement_outlives_it(tmp_path, monkeypatch, difference):
    """The refined parameters, the outputs of the autograd function that runs back through the steps, die with the
    step: held by the function's context, they would hold it in turn, a cycle through autograd's graph that gc
    cannot free, leaking every batch's trajectory (and the one-sided difference's kept gradients, steps times the
    model's size). The trajectory goes at the end of the backward pass, while the outputs may still live."""
    trajectories = []

    def run_and_watch(refinement, *args):
        trajectory = original(refinement, *args)
        trajectories.append(weakref.ref(trajectory))
        return trajectory

    original = Refinement.run
    monkeypatch.setattr(Refinement, "run", run_and_watch)
    run = tiny_run(tmp_path / "run", max_steps=0)
    model = run.model.train()
    tokens, lengths = next(iter(_valid_loader(run)))
    refined = refine_posterior(model, tokens, lengths, model.encoder(tokens, lengths).posterior, {EVERY_KL_TERM: 1.0},
                               steps=3, lr=1.0, momentum=0.5, max_grad_norm=5.0, end_to_end=True,
                               hvp_difference=difference)
    model.objective(model(tokens, lengths, posterior=refined), {EVERY_KL_TERM: 1.0}).backward()
    gc.collect()
    assert len(trajectories) == 1 and trajectories[0]() is None, "the trajectory outlives the backward pass"
    outputs = [weakref.ref(value) for value in refined]
    del refined
    gc.collect()
    assert all(output() is None for output in outputs)


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="this CPU has no native bfloat16 products")
@pytest.mark.parametrize("difference", ["central", "one-sided"])
def test_in_a_bf16_step_the_one_sided_difference_refines_in_float32(tmp_path, difference):
    """The one-sided difference subtracts the refinement's own gradients from products taken in float32, so in a
    bfloat16 training step its refinement runs in float32: the refined posterior is float32's to the bit. The central
    difference's refinement runs under the step's autocast, which moves it."""
    run = tiny_run(tmp_path / "run", max_steps=0)
    model = run.model.train()
    tokens, lengths = next(iter(_valid_loader(run)))
    start = model.encoder(tokens, lengths).posterior

    def refined_mean(precision: str) -> torch.Tensor:
        torch.manual_seed(1)
        with autocast(precision, tokens.device):
            return refine_posterior(model, tokens, lengths, start, {EVERY_KL_TERM: 1.0}, steps=3, lr=1.0,
                                    momentum=0.5, max_grad_norm=5.0, end_to_end=True, hvp_difference=difference).mean

    assert torch.equal(refined_mean("bf16"), refined_mean("fp32")) == (difference == "one-sided")


def test_an_sa_vae_run_is_evaluated_through_its_refined_posterior(tmp_path, capsys, monkeypatch):
    """Evaluation reads an SVI-trained model as Kim et al. do: the encoder's posterior refined by the run's own
    steps. The bounds hold (IW-NLL <= ELBO-NLL), the refined ELBO is the tighter one, a batch's refined posterior
    does not depend on the random state or on what was scored before it (every column reads the same posterior;
    an IW pass stopped and resumed gives the uninterrupted numbers), and the result says how it was read."""
    from seqvae_zoo.cli import main
    from seqvae_zoo.data.loading import load_dataset
    from seqvae_zoo.evaluation.protocol import SplitBatches, evaluate, importance_nll
    from seqvae_zoo.training.checkpoint import load_checkpoint
    from seqvae_zoo.training.procedures.svi import RefiningEncoder

    refining = RefiningEncoder.forward
    tiny_run(tmp_path / "run", [*SVI[:1], "procedures.svi.steps = 10"], epochs=1)
    loaded = load_checkpoint(tmp_path / "run")
    batches = SplitBatches(loaded.vocab, load_dataset("synthetic", **SMALL_DATA), "test", batch_size=4).batches
    plain = evaluate(loaded.model, batches, iw_samples=5)
    with loaded.procedure.scoring(loaded.model) as refinement:
        refined = evaluate(loaded.model, batches, iw_samples=5)
        full = importance_nll(loaded.model, batches, iw_samples=3)
        with pytest.raises(StopRequested):
            importance_nll(loaded.model, batches, iw_samples=3, state_path=tmp_path / "iw.json", stop=StopAfter(2))
        resumed = importance_nll(loaded.model, batches, iw_samples=3, state_path=tmp_path / "iw.json")
        posteriors = []
        for seed in (1, 2):  # whatever the random state (the bounds' pass and the IW pass leave it differently)
            torch.manual_seed(seed)
            loaded.model.encoder._last = None
            posteriors.append(loaded.model.encoder(*batches[0]).posterior)
    assert refinement.startswith("the encoder's posterior refined by 10 steps of SGD")
    assert type(loaded.model.encoder).__name__ != "RefiningEncoder", "the encoder is back after the block"
    assert refined["iw"]["nll"] <= refined["elbo"]["nll"]
    assert refined["elbo"]["nll"] < plain["elbo"]["nll"]
    assert resumed == full
    assert all(torch.equal(a, b) for a, b in zip(*posteriors))

    assert main(["eval", str(tmp_path / "run"), "--iw-samples", "2", "--quiet"]) == 0
    assert "posterior: the encoder's posterior refined by 10 steps" in capsys.readouterr().out

    refined_batches = []  # seqvae generate reconstructs from the refined posterior too
    monkeypatch.setattr(RefiningEncoder, "forward", lambda self, tokens, lengths: refined_batches.append(
        len(lengths)) or refining(self, tokens, lengths))
    sentence = " ".join(load_dataset("synthetic", **SMALL_DATA).splits["test"][0])
    assert main(["generate", str(tmp_path / "run"), "-s", sentence]) == 0
    assert refined_batches == [1] and capsys.readouterr().out.startswith(f"> {sentence}\n")


def _valid_loader(run):
    from seqvae_zoo.data.batching import make_loader
    encoded = [run.vocab.encode(s) for s in run.corpus.splits["valid"]]
    return make_loader(encoded, 16, run.vocab.pad_id, shuffle=False)


# -- every procedure -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("procedure", sorted(PROCEDURES))
def test_resume_equals_uninterrupted_training(tmp_path, procedure):
    bindings = PROCEDURES[procedure]
    straight = tiny_run(tmp_path / "straight", bindings)
    stopped_at = {"aggressive": 0, "pretrain_reset": 5, "svi": 2}[procedure]  # procedure steps before the stop
    with pytest.raises(StopRequested):
        tiny_run(tmp_path / "stopped", bindings, stop=StopAfter(stopped_at))
    saved = read_checkpoint(tmp_path / "stopped" / "checkpoint.pt")
    assert 0 < saved["step"] < straight.history[-1]["step"] and saved["procedure"]["name"] == procedure
    assert procedure != "aggressive" or 0 < saved["sampler"]["position"] < BATCHES  # inside an aggressive epoch
    resumed = train_run([], "synthetic", tmp_path / "stopped", resume=True, progress=False)
    assert_same_rows(resumed.history, straight.history)
    left, right = (read_checkpoint(path / "checkpoint.pt") for path in (tmp_path / "straight", tmp_path / "stopped"))
    assert plain(left["procedure"]) == plain(right["procedure"]) or procedure == "pretrain_reset"
    for name in left["model"]:
        assert torch.equal(left["model"][name], right["model"][name]), name


@pytest.mark.parametrize("procedure", ["aggressive", "svi"])
def test_holding_the_other_parameters_fixed_trains_exactly_as_dropping_their_gradients(tmp_path, procedure,
                                                                                      monkeypatch):
    """A step on a part of the parameters (aggressive training's encoder-only and decoder-only updates) and SA-VAE's
    refinement compute no gradient for the others; the run is the one that computed and dropped them, to the bit:
    parameters, Adam's moments and every epoch row but the clocks."""
    import contextlib

    from seqvae_zoo.training import trainer
    from seqvae_zoo.training.procedures import svi

    held = tiny_run(tmp_path / "held", PROCEDURES[procedure])
    with monkeypatch.context() as patched:
        for module in (trainer, svi):
            patched.setattr(module, "held_fixed", lambda parameters: contextlib.nullcontext())
        computed = tiny_run(tmp_path / "computed", PROCEDURES[procedure])
    assert_same_rows(held.history, computed.history)
    assert_same_training_state(tmp_path / "held" / "checkpoint.pt", tmp_path / "computed" / "checkpoint.pt",
                               atol=0, rtol=0)


def test_the_default_procedure_is_standard(tmp_path):
    tiny_run(tmp_path / "run", max_steps=1)
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["procedure"] == {"name": "standard", "state": {}}


# -- bad choices ---------------------------------------------------------------------------------------------------
def test_an_unknown_procedure_names_the_closest_one():
    with pytest.raises(ConfigError, match="Did you mean 'procedures.aggressive'"):
        parse_config(["vrae"], ["training.TrainingSettings.procedure = @procedures.agressive()"])


@pytest.mark.parametrize("bindings, message", [
    (["procedures.aggressive.window = 0"], r"procedures\.aggressive\.window must be an integer >= 1; got 0"),
    (["procedures.aggressive.window = 5"],
     r"window \(5\) must not exceed procedures\.aggressive\.max_inner_steps \(2\)"),
    (["procedures.aggressive.max_inner_steps = 2.5"], r"max_inner_steps must be an integer >= 1; got 2\.5"),
])
def test_bad_aggressive_settings_give_one_clear_message(tmp_path, bindings, message):
    with pytest.raises(ProcedureError, match=message):
        tiny_run(tmp_path / "run", [*AGGRESSIVE, *bindings])


@pytest.mark.parametrize("bindings, message", [
    ([*SVI, "procedures.svi.momentum = 1.0"], r"procedures\.svi\.momentum must be a number in \[0, 1\); got 1\.0"),
    ([*SVI, "procedures.svi.lr = 0"], r"procedures\.svi\.lr must be a number > 0; got 0"),
    ([*SVI, "procedures.svi.max_grad_norm = -1.0"], r"procedures\.svi\.max_grad_norm must be a number > 0; got -1\.0"),
    ([*SVI, "procedures.svi.hvp_step = 1.5"], r"procedures\.svi\.hvp_step must be a number in \(0, 1\); got 1\.5"),
    ([*SVI, "procedures.svi.hvp_difference = 'forward'"], r"procedures\.svi\.hvp_difference must be one of "
     r"'one-sided', 'central' \(the finite difference .*\); got 'forward'"),
    ([*SVI, "procedures.svi.end_to_end = 'yes'"], r"procedures\.svi\.end_to_end must be True \(backpropagate .*\) or "
     r"False \(stop the gradient at the refined posterior\); got 'yes'"),
    ([*PRETRAIN_RESET, "procedures.pretrain_reset.pretrain_epochs = 2"], r"pretrain_epochs \(2\) leaves no epoch"),
])
def test_bad_settings_give_one_clear_message(tmp_path, bindings, message):
    with pytest.raises(ProcedureError, match=message):
        tiny_run(tmp_path / "run", bindings)


def test_a_procedure_that_trains_the_posterior_refuses_a_language_model(tmp_path):
    with pytest.raises(ProcedureError, match="'svi' trains the encoder's posterior .* this model has no encoder"):
        tiny_run(tmp_path / "run", SVI, preset="lstm")


def test_svi_refuses_a_latent_family_its_gradient_steps_would_leave(tmp_path):
    with pytest.raises(ProcedureError, match="suits the Gaussian family only; this encoder's family is 'vmf'"):
        tiny_run(tmp_path / "run", [*SVI, "encoders.lstm.family = 'vmf'", "models.SeqVAE.latent_prior = "
                                    "@priors.uniform_sphere"])


def test_resuming_a_checkpoint_of_another_procedure_is_refused(tmp_path):
    tiny_run(tmp_path / "run", max_steps=2)
    path = tmp_path / "run" / "checkpoint.pt"
    state = read_checkpoint(path)
    state["procedure"] = {"name": "svi", "state": {}}
    save_checkpoint(path, {key: value for key, value in state.items() if not key.startswith("format")})
    with pytest.raises(ProcedureError, match="trained by procedure 'svi', and the config names 'standard'"):
        train_run([], "synthetic", tmp_path / "run", resume=True, progress=False)


# -- a procedure from outside the package --------------------------------------------------------------------------
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "autoencoder_warmup"


def test_the_example_procedure_trains_from_its_own_file_and_gin_file(tmp_path, monkeypatch):
    from plugin_fixture import isolated_registrations

    with isolated_registrations(monkeypatch):
        monkeypatch.syspath_prepend(str(EXAMPLE))
        run = train_run([str(EXAMPLE / "vrae_warmup.gin")], "synthetic", tmp_path / "run",
                        bindings=[*TINY, "procedures.autoencoder_warmup.steps = 4"], epochs=2, progress=False,
                        dataset_options=SMALL_DATA)
        assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["procedure"]["name"] == "autoencoder_warmup"
        # its 4 steps are the first epoch: KL weight 0 there, the schedule's after
        assert [row["weight_z_enc"] for row in run.history] == [0.0, 1.0]
        assert run.history[-1]["train_nll"] < run.history[0]["train_nll"]


# -- several processes -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("procedure", ["aggressive", "svi"])
def test_two_processes_train_like_one(tmp_path, deterministic, procedure):
    """Without random draws, two processes (torchrun) train as one process with the whole batch (the same inner
    loops, decoder steps and MI decisions; the same refinements): the same parameters, Adam moments and epoch rows
    after 2 epochs."""
    sizes = {"train_size": 96, "valid_size": 24, "test_size": 8}
    bindings = PROCEDURES[procedure]
    two, one = tmp_path / "two", tmp_path / "one"
    subprocess.run(_torchrun(deterministic, _train_arguments(
        two, sizes, "--epochs", "2", *(a for b in bindings for a in ("--gin", b)))), env=ENV, check=True)
    train_run(["vrae_sa_aux"], "synthetic", one, bindings=[*DISTRIBUTED_TINY, *bindings], epochs=2, device="cpu",
              progress=False, dataset_options=sizes)
    assert_same_training_state(two / "checkpoint.pt", one / "checkpoint.pt", atol=1e-5)
    rows = [read_checkpoint(run / "checkpoint.pt")["history"] for run in (two, one)]
    assert_same_epoch_rows(*rows)
    assert procedure != "aggressive" or rows[0][0]["encoder_only_steps"] > 0
