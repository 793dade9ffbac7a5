"""The trainer: learning, exact resume (in process and after SIGKILL), bad checkpoints, NaN stops, run files."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import gin
import pytest
import torch

from seqvae_zoo.cli import main
from seqvae_zoo.errors import UserError
from seqvae_zoo.evaluation import evaluate_corpus
from seqvae_zoo.kernels.matmul import onednn_linear_available
from seqvae_zoo.schedules.annealing import Cyclical, Linear, TwoPhase
from seqvae_zoo.training.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from seqvae_zoo.training.run import train_run
from seqvae_zoo.training.trainer import NonFiniteLossError, TrainingSettings, make_optimizer, processes_of

TINY = ["EMBEDDING = 16", "HIDDEN = 16", "LATENT = 4", "training.TrainingSettings.batch_size = 16",
        "training.TrainingSettings.checkpoint_every = 4", "kl_schedules.linear.warmup_epochs = 1.0"]
SMALL_DATA = {"train_size": 160, "valid_size": 32, "test_size": 32}


def tiny_run(out: Path, preset: str = "vrae_sa_aux", **kwargs):
    kwargs.setdefault("epochs", 2)
    return train_run([preset], "synthetic", out, bindings=TINY + kwargs.pop("bindings", []), progress=False,
                     dataset_options=SMALL_DATA, **kwargs)


def parameters(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


def assert_same_parameters(a: Path, b: Path, atol: float = 0.0) -> None:
    left, right = parameters(a), parameters(b)
    assert left.keys() == right.keys()
    for name in left:
        assert torch.allclose(left[name], right[name], atol=atol, rtol=0), name


@pytest.mark.parametrize("setting, value, rule", [
    ("lr", -1.0, "a number >= 0"),
    ("clip_norm", 0.0, "a number > 0"),
    ("lr_decay_every", 0, "an integer >= 1 (epochs between decays)"),
    ("lr_decay_factor", 0, "a number > 0 (0.5 halves the rate)"),
    ("lr_decay_after", -1, "an integer >= 0 (the epochs before the first decay)"),
    ("checkpoint_every", -3, "an integer >= 0 (steps; 0: at each epoch's end)"),
    ("epochs", 2.5, "an integer >= 0 (0: build the model, train nothing)"),
    ("batch_size", 0, "an integer >= 1"),
    ("eval_batch_size", True, "an integer >= 1"),
])
def test_a_setting_training_cannot_run_with_is_refused_in_one_line_before_anything_is_written(
        tmp_path, capsys, setting, value, rule):
    """torch would refuse a negative lr with a traceback and divide by a decay every 0 epochs only at epoch 10; a
    clipping norm of 0 would train a model that never moves. The binding is named, and no run folder is begun."""
    out = tmp_path / "run"
    try:
        status = main(["train", "vrae", "--data", "synthetic", "--quiet", "--out", str(out), "--max-steps", "1",
                       *(a for b in [*TINY, f"training.TrainingSettings.{setting} = {value}"] for a in ("--gin", b))])
    finally:
        gin.clear_config()  # the refused binding stays parsed: a later TrainingSettings() would meet it
    assert status == 2 and not out.exists()
    assert capsys.readouterr().err.splitlines() == [
        f"error: training.TrainingSettings.{setting} must be {rule}; got {value!r} (gin call: TrainingSettings)"]


def test_lr_schedule_is_the_papers():
    settings = TrainingSettings()
    factors = [settings.lr_factor(epoch) for epoch in range(16)]
    assert factors[:10] == [1.0] * 10
    assert factors[10:16] == [0.5, 0.5, 0.25, 0.25, 0.125, 0.125]


def test_kl_schedules():
    assert Linear(warmup_epochs=2.0).weights(0, 1.0) == {"kl": 0.5}
    assert Linear(warmup_epochs=2.0, terms=["z_enc"]).weights(0, 3.0) == {"z_enc": 1.0}
    cyclical = Cyclical(cycle_epochs=2.0, ratio=0.5)
    assert [cyclical.weights(0, e)["kl"] for e in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5]
    two_phase = TwoPhase()
    early, late = two_phase.weights(0, 2.0), two_phase.weights(0, 7.5)
    assert early == {"z_enc": 0.1, "kl": 0.4, "aux": 0.0}
    assert late["z_enc"] == pytest.approx(0.1 + 0.9 * 0.5) and late["kl"] == 1.0 and late["aux"] == 1.0


#: the devices a training test runs on: the CPU, and a GPU where there is one
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="needs a CUDA device"))]


def best_unigram_nll(sentences: list[list[str]]) -> float:
    """Per sentence, the NLL of the unigram model fitted to these very sentences, end-of-sentence a token: no unigram
    model does better on them."""
    counts = Counter(word for sentence in sentences for word in sentence)
    counts[None] = len(sentences)  # end-of-sentence
    total = sum(counts.values())
    return -sum(count * math.log(count / total) for count in counts.values()) / len(sentences)


#: What keeps a preset's z_enc alive in two short epochs: free bits on its KL. For vrae_sa_aux also the authors'
#: code's auxiliary weight, 0.25: at the preset's 1.0 its z_enc stayed uninformative in this run (KL under the free
#: bits, MI about 0).
LIVE_LATENT = {"vrae": [], "vrae_sa": [], "vrae_sa_aux": ["aux_losses.context_prediction.weight = 0.25"]}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preset", ["lstm", "vrae", "vrae_sa", "vrae_sa_aux"])
def test_each_preset_learns_from_context_and_its_latent_carries_the_component(tmp_path, preset, device):
    """Two short epochs on a small synthetic instance (60 words, 2 components). The validation -ELBO, an upper bound
    on the model's NLL, falls below the best unigram model's NLL of that split: the model reads the context. A model
    with z_enc, kept alive by free bits (``LIVE_LATENT``), carries information in it: I_q(x; z_enc) over the test
    split above 0.3 nats (a sentence reveals at most 0.68 nats about its component), and the probe recovers the
    component well above chance. The probe alone would not show it: a collapsed posterior's means still separate the
    components (docs/metrics.md)."""
    composition = [] if preset == "lstm" else [
        "models.SeqVAE.regularizers = [@regularizers.free_bits()]", "regularizers.free_bits.nats = 2.0",
        *LIVE_LATENT[preset]]
    run = train_run([preset], "synthetic", tmp_path, device=device, bindings=[
        "EMBEDDING = 32", "HIDDEN = 32", "LATENT = 4", "training.TrainingSettings.checkpoint_every = 0",
        "training.TrainingSettings.batch_size = 16", "training.TrainingSettings.lr = 1e-2",
        "kl_schedules.linear.warmup_epochs = 1.0", *composition], epochs=2, progress=False,
        dataset_options={"components": 2, "states": 4, "words": 60, "train_size": 640, "valid_size": 100,
                         "test_size": 100})
    first, last = run.history[0], run.history[-1]
    assert last["train_nll"] < first["train_nll"]
    assert last["valid_neg_elbo"] < best_unigram_nll(run.corpus.splits["valid"]) - 1.0
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "learning_curves.png").stat().st_size > 0
    if preset == "lstm":
        return
    result = evaluate_corpus(run.model, run.vocab, run.corpus, "test", iw_samples=1)
    assert result["latent"]["mi"] > 0.3, result["latent"]
    assert result["synthetic"]["probe_accuracy"] > result["synthetic"]["probe_chance"] + 0.3, result["synthetic"]


@pytest.mark.parametrize("device", DEVICES)
def test_resume_equals_uninterrupted_training(tmp_path, device):
    tiny_run(tmp_path / "straight", device=device)
    tiny_run(tmp_path / "stopped", max_steps=6, device=device)  # mid-epoch: 10 batches per epoch
    assert read_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["step"] == 6
    resumed = train_run([], "synthetic", tmp_path / "stopped", resume=True, progress=False, device=device)
    assert resumed.history[-1]["epoch"] == 2
    assert next(resumed.model.parameters()).device.type == device
    # a GPU's atomic additions (embedding and index gradients) sum in no fixed order: equal to float rounding there
    assert_same_parameters(tmp_path / "straight" / "checkpoint.pt", tmp_path / "stopped" / "checkpoint.pt",
                           atol=0.0 if device == "cpu" else 1e-5)


def test_each_epoch_row_names_the_numbers_of_processes_that_ran_its_steps(tmp_path):
    """One process: 1 in every row. A checkpoint whose epoch so far ran on two processes (as torchrun writes it),
    resumed by one: "2, then 1" for that epoch, 1 for the next, which is all one process's. A checkpoint from
    before the column: its epoch so far ran on as many processes as wrote it (one random stream each)."""
    straight = tiny_run(tmp_path / "straight")
    assert [row["processes"] for row in straight.history] == [1, 1]
    for name, change, first_epoch in [("two", lambda state: state["epoch_progress"].update(processes=[2]), [2, 1]),
                                      ("before", lambda state: state["epoch_progress"].pop("processes"), [1])]:
        tiny_run(tmp_path / name, max_steps=6)  # mid-epoch: 10 batches per epoch
        path = tmp_path / name / "checkpoint.pt"
        state = read_checkpoint(path)
        assert state["epoch_progress"]["processes"] == [1]
        change(state)
        save_checkpoint(path, state)
        resumed = train_run([], "synthetic", tmp_path / name, resume=True, progress=False)
        assert [processes_of(row) for row in resumed.history] == [first_epoch, [1]]
        if name == "two":
            assert resumed.history[0]["processes"] == "2, then 1"
            assert "2, then 1" in (tmp_path / name / "metrics.csv").read_text()
    assert processes_of({"epoch": 1}) == []  # a row written before the column: not recorded


def test_resume_from_a_checkpoint_of_the_row_major_output_weight_matches_uninterrupted(tmp_path):
    """Checkpoints written before the decoders held the output weight transposed have it, and its Adam moments,
    (vocabulary, hidden): resuming one transposes both and continues exactly."""
    tiny_run(tmp_path / "straight")
    tiny_run(tmp_path / "stopped", max_steps=6)
    path = tmp_path / "stopped" / "checkpoint.pt"
    state = read_checkpoint(path)
    names = [name for name, _ in load_checkpoint(path).model.named_parameters()]
    state["model"]["decoder.output.weight"] = state["model"].pop("decoder.output.weight_t").t().contiguous()
    moments = state["optimizer"]["state"][names.index("decoder.output.weight_t")]
    for name in ("exp_avg", "exp_avg_sq"):
        moments[name] = moments[name].t().contiguous()
    save_checkpoint(path, {key: value for key, value in state.items() if not key.startswith("format")})
    train_run([], "synthetic", tmp_path / "stopped", resume=True, progress=False)
    assert_same_parameters(tmp_path / "straight" / "checkpoint.pt", path)


def test_resume_refuses_optimizer_state_of_another_shape(tmp_path):
    tiny_run(tmp_path / "stopped", max_steps=6)
    path = tmp_path / "stopped" / "checkpoint.pt"
    state = read_checkpoint(path)
    names = [name for name, _ in load_checkpoint(path).model.named_parameters()]
    moments = state["optimizer"]["state"][names.index("decoder.embedding.weight")]
    moments["exp_avg"] = moments["exp_avg"][:-1]
    save_checkpoint(path, {key: value for key, value in state.items() if not key.startswith("format")})
    written = {file: file.read_bytes() for file in (tmp_path / "stopped").rglob("*") if file.is_file()}
    with pytest.raises(CheckpointError, match=r"optimizer state 'exp_avg' has shape .* for a parameter of shape"):
        train_run([], "synthetic", tmp_path / "stopped", resume=True, progress=False)
    # nothing the run had written is lost or changed, and nothing is added
    assert {file: file.read_bytes() for file in (tmp_path / "stopped").rglob("*") if file.is_file()} == written


def test_a_resume_names_the_settings_that_changed_since_the_run_began(tmp_path):
    """A run's saved config names what its presets bind; a default changed in the code since the run began would
    apply to the rest of it in silence. The resume compares the operative config with the run's start and says."""
    tiny_run(tmp_path, max_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same code, and a longer run asked for: nothing to say
        train_run([], "synthetic", tmp_path, resume=True, progress=False, max_steps=3, epochs=3)
    path = tmp_path / "checkpoint.pt"
    state = read_checkpoint(path)
    started = state["operative_config"]
    assert "TrainingSettings.clip_norm = 5.0" in started and "TrainingSettings.epochs = 2" in started
    state["operative_config"] = started.replace("clip_norm = 5.0", "clip_norm = 1.0")  # as if 5.0 came later
    save_checkpoint(path, {key: value for key, value in state.items() if not key.startswith("format")})
    with pytest.warns(UserWarning, match=r"with settings it did not start with .*: -TrainingSettings.clip_norm = 1.0; "
                      r"\+TrainingSettings.clip_norm = 5.0\. The run goes on with the new ones"):
        train_run([], "synthetic", tmp_path, resume=True, progress=False, max_steps=4)
    # the run's start is what it keeps, in the checkpoint and its folder, for the next resume to compare with
    assert read_checkpoint(path)["operative_config"] == (tmp_path / "operative_config.gin").read_text()
    assert "clip_norm = 1.0" in (tmp_path / "operative_config.gin").read_text()
    # a checkpoint from before the comparison: the run folder's operative config is its start
    state = read_checkpoint(path)
    del state["operative_config"]
    save_checkpoint(path, {key: value for key, value in state.items() if not key.startswith("format")})
    with pytest.warns(UserWarning, match=r"-TrainingSettings.clip_norm = 1.0; \+TrainingSettings.clip_norm = 5.0"):
        train_run([], "synthetic", tmp_path, resume=True, progress=False, max_steps=5)


def test_progress_says_the_rate_of_the_steps_since_the_last_checkpoint_of_the_launch(tmp_path):
    """progress.json carries, beside the run's total, the steps and seconds since the launch's previous checkpoint
    (or since the launch began): the rate under the load the run trains under now, for `seqvae bench --status`."""
    tiny_run(tmp_path, max_steps=6)  # checkpoints at steps 4 and 6
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["step"] == 6 and progress["recent"]["steps"] == 2
    assert 0 < progress["recent"]["seconds"] < progress["train_seconds"]
    train_run([], "synthetic", tmp_path, resume=True, progress=False, max_steps=7)
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["step"] == 7 and progress["recent"]["steps"] == 1  # from the resume, not the run's start
    # the checkpoint at an epoch's end counts that epoch once (its clock restarts only with the next epoch's batches)
    train_run([], "synthetic", tmp_path, resume=True, progress=False, max_steps=10)  # 10 batches an epoch
    progress = json.loads((tmp_path / "progress.json").read_text())
    history = read_checkpoint(tmp_path / "checkpoint.pt")["history"]
    assert progress["epoch"] == 1 and progress["train_seconds"] == sum(row["seconds"] for row in history)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    """A run killed with SIGKILL between checkpoints resumes from the last one and ends where an uninterrupted
    run ends."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "seqvae_zoo.cli", "train", "vrae_sa_aux", "--data", "synthetic", "--quiet",
               "--epochs", "2", "--gin", "synthetic.train_size = 160", "--gin", "synthetic.valid_size = 32",
               "--gin", "synthetic.test_size = 32", *(a for b in TINY for a in ("--gin", b)),
               "--gin", "training.TrainingSettings.checkpoint_every = 1"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, "--out", str(killed)], env=env)
    checkpoint = killed / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.is_file() and read_checkpoint(checkpoint)["step"] >= 5:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = read_checkpoint(checkpoint)["step"]
    assert 5 <= stopped_at < 20
    subprocess.run([*command[:3], "train", "--resume", "--out", str(killed), "--quiet"], env=env, check=True)
    straight = tmp_path / "straight"
    subprocess.run([*command, "--out", str(straight)], env=env, check=True)
    assert read_checkpoint(checkpoint)["step"] == 20
    assert_same_parameters(straight / "checkpoint.pt", checkpoint, atol=1e-6)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from seqvae_zoo.model import SeqVAE

    original = SeqVAE.objective
    calls = {"n": 0}

    def poisoned(self, terms, weights):
        calls["n"] += 1
        loss = original(self, terms, weights)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr(SeqVAE, "objective", poisoned)
    with pytest.raises(NonFiniteLossError, match="at step 7 .*checkpoint.pt"):
        tiny_run(tmp_path)
    kept = read_checkpoint(tmp_path / "checkpoint.pt")
    assert kept["step"] == 4
    assert all(torch.isfinite(value).all() for value in kept["model"].values())


def test_bad_checkpoints_give_one_clear_error(tmp_path):
    tiny_run(tmp_path / "run", max_steps=4)
    good = tmp_path / "run" / "checkpoint.pt"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    for path, message in ((truncated, "truncated, corrupt"), (garbage, "truncated, corrupt"),
                          (foreign, "not a seqvae_zoo checkpoint"), (tmp_path / "missing.pt", "does not exist")):
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(path)
    loaded = load_checkpoint(tmp_path / "run")
    assert not loaded.model.training and loaded.vocab.size > 4


def test_checkpoints_refuse_code_execution(tmp_path):
    """Weights-only loading: a pickle that would run code is refused, not executed."""

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "seqvae_zoo.checkpoint", "payload": Exploit()}, path)
    with pytest.raises(CheckpointError):
        read_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_atomic_save_leaves_no_temporary_file(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"x": torch.ones(3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    assert torch.equal(read_checkpoint(tmp_path / "c.pt")["x"], torch.ones(3))


def test_an_existing_run_is_never_overwritten(tmp_path):
    tiny_run(tmp_path, max_steps=4)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(UserError, match="already holds a run: pass --resume"):
        tiny_run(tmp_path, max_steps=4)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    with pytest.raises(UserError, match="nothing to resume"):
        train_run([], "synthetic", tmp_path / "empty", resume=True)
    with pytest.raises(UserError, match="saved config"):
        train_run(["vrae"], "synthetic", tmp_path, resume=True)


def test_run_folder_holds_config_metrics_curves_and_events(tmp_path):
    run = tiny_run(tmp_path, epochs=2)
    assert "SeqVAE.decoder = @decoders.attentive" in (tmp_path / "config.gin").read_text()
    assert "TrainingSettings" in (tmp_path / "operative_config.gin").read_text()
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    # one weight column per term the model declares, whatever names the schedule gave its weights under
    assert len(rows) == 3 and "valid_neg_elbo" in rows[0]
    assert [c for c in rows[0].split(",") if c.startswith("weight_")] == [
        "weight_z_enc", "weight_z_t", "weight_context_prediction"]
    assert any((tmp_path / "tensorboard").iterdir())
    assert (tmp_path / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert [row["epoch"] for row in run.history] == [1, 2]


def test_train_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["train", "vrae_sa_aus", "--data", "synthetic", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown preset 'vrae_sa_aus'. Did you mean 'vrae_sa_aux'?")
    assert main(["train", "vrae", "--data", "ptbb", "--out", str(tmp_path / "y")]) == 2
    assert "Did you mean 'ptb'?" in capsys.readouterr().err


def test_a_bad_onednn_switch_stops_a_command_before_it_writes_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEQVAE_ONEDNN_MATMUL", "off")
    onednn_linear_available.cache_clear()
    try:
        assert main(["train", "vrae", "--data", "synthetic", "--max-steps", "1", "--out", str(tmp_path / "x")]) == 2
    finally:
        monkeypatch.undo()
        onednn_linear_available.cache_clear()
    assert capsys.readouterr().err.startswith("error: SEQVAE_ONEDNN_MATMUL must be 0")
    assert not (tmp_path / "x").exists()


def test_the_trainers_fused_adam_makes_the_default_update():
    """make_optimizer's fused kernel and torch's default Adam take the same steps (float rounding apart), also
    across a learning-rate change like the paper's decay."""
    generator = torch.Generator().manual_seed(3)
    start = [torch.randn(shape, generator=generator) for shape in ((40, 7), (7,), (1000,))]
    grads = [[torch.randn(p.shape, generator=generator) for p in start] for _ in range(6)]
    fused_params = [p.clone().requires_grad_() for p in start]
    plain_params = [p.clone().requires_grad_() for p in start]
    fused, plain = make_optimizer(fused_params, 1e-2), torch.optim.Adam(plain_params, lr=1e-2)
    assert fused.param_groups[0]["fused"] and not plain.param_groups[0]["fused"]
    for step, step_grads in enumerate(grads):
        if step == 3:
            for optimizer in (fused, plain):
                optimizer.param_groups[0]["lr"] = 5e-3
        for params, optimizer in ((fused_params, fused), (plain_params, plain)):
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            optimizer.step()
    for got, expected, initial in zip(fused_params, plain_params, start):
        assert not torch.equal(got, initial)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


KEEP_FREED_MEMORY_PROBE = """
import sys
from seqvae_zoo.training.memory import keep_freed_memory
def resident_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2 ** 20
if sys.argv[1] == "keep":
    assert keep_freed_memory()
small = bytearray(24 * 2 ** 20)  # below glibc's largest mmap threshold (32 MiB), every page touched
large = bytearray(48 * 2 ** 20)  # above it: glibc maps such a block afresh unless told otherwise
before = resident_mb()
del small
between = resident_mb()
del large
print(before - between, between - resident_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and sets glibc's allocator")
def test_keep_freed_memory_keeps_a_freed_block_in_the_process():
    """glibc returns freed blocks of 24 and 48 MiB to the kernel by default (the next use pays page faults); after
    keep_freed_memory, which every seqvae command calls, both stay."""
    def released(mode: str) -> list[float]:
        result = subprocess.run([sys.executable, "-c", KEEP_FREED_MEMORY_PROBE, mode], capture_output=True,
                                text=True, check=True)
        return [float(mb) for mb in result.stdout.split()]
    small, large = released("default")
    assert small > 20 and large > 40
    assert max(released("keep")) < 1
