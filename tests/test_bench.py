"""The bench harness: records with provenance, cache and resume after interruption, tables rebuilt from JSON."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest
import torch

from seqvae_zoo.bench.harness import Bench
from seqvae_zoo.bench.leaderboard import format_number, load_results, metric_value, render
from seqvae_zoo.bench.suite import SuiteError, load_suite, suite_names
from seqvae_zoo.cli import main

TINY_SUITE = """
title = "tiny"
datasets = ["synthetic"]
seeds = [0, 1]
epochs = 1
bindings = ["EMBEDDING = 16", "HIDDEN = 16", "LATENT = 4", "training.TrainingSettings.batch_size = 32",
            "training.TrainingSettings.checkpoint_every = 0"]

[dataset_options.synthetic]
train_size = 128
valid_size = 32
test_size = 32

[evaluation]
split = "test"
iw_samples = 4
batch_size = 32

[[models]]
name = "LSTM"
configs = ["lstm"]

[[models]]
name = "VRAE"
configs = ["vrae"]

[[columns]]
header = "IW-NLL"
metric = "iw.nll"

[[columns]]
header = "KL z_enc"
metric = "kl.z_enc"

[[columns]]
header = "tokens/s"
metric = "training.tokens_per_s"
digits = 0

[[references]]
model = "VRAE"
source = "made-up reference"
values = { "iw.nll" = 12.5 }
"""


@pytest.fixture()
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SUITE)
    return path


def test_shipped_suites_parse():
    assert {"quick", "paper-ptb", "paper-yelp", "ptb-short"} <= set(suite_names())
    for name in suite_names():
        suite = load_suite(name)
        assert suite.runs() and suite.columns


def test_bench_writes_records_with_provenance_and_rebuilds_the_same_table(tmp_path, suite_file, capsys):
    assert main(["bench", str(suite_file), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    records = sorted((tmp_path / "out" / "tiny" / "records").glob("*.json"))
    assert len(records) == 4
    record = json.loads(records[0].read_text())
    for key in ("package_version", "git_commit", "torch_version", "device", "finished_at"):
        assert key in record["provenance"]
    assert record["provenance"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()  # e.g. AVX512
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    assert (names[0] if names else platform.machine()) in record["provenance"]["device"]  # the processor, by name
    assert record["config_hash"] and "SeqVAE.decoder" in record["config_text"]
    assert record["dataset"]["fingerprint"] and record["protocol_version"]
    assert record["training"]["epochs"] == 1 and record["training"]["tokens_per_s"] > 0
    assert record["training"]["precision"] == "fp32"  # the training precision, whatever evaluation ran in
    assert record["training"]["processes"] == [1]  # a bench worker trains on one process
    assert metric_value(record, "iw.nll") == record["metrics"]["iw"]["nll"]
    assert main(["leaderboard", str(tmp_path / "out"), "--format", "md"]) == 0
    rebuilt = capsys.readouterr().out
    assert rebuilt.strip() in printed
    assert "made-up reference" in rebuilt and "±" in rebuilt  # a reference row; two seeds give a std
    lstm_row = next(line for line in rebuilt.splitlines() if line.startswith("| LSTM"))
    assert "–" in lstm_row  # no KL for the LSTM
    for fmt, marker in (("latex", "\\toprule"), ("csv", "IW-NLL std")):
        assert marker in render(load_results(tmp_path / "out"), fmt)


def test_an_sa_vae_row_is_scored_through_its_refined_posterior_and_its_record_says_so(tmp_path):
    """Both evaluation phases (the bounds, then IW-NLL) read an SVI-trained run through its refined posterior
    (the run's procedure decides); the record names the refinement and the table's row says so; a plain VAE's
    record has no such note."""
    suite = tmp_path / "svi.toml"
    suite.write_text(TINY_SUITE.replace("seeds = [0, 1]", "seeds = [0]").replace(
        'name = "LSTM"\nconfigs = ["lstm"]', 'name = "SA-VAE"\nconfigs = ["sa_vae"]\n'
        'bindings = ["procedures.svi.steps = 3"]'))
    assert main(["bench", str(suite), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    records = {record["model"]: record for record in map(
        lambda path: json.loads(path.read_text()), (tmp_path / "out" / "svi" / "records").glob("*.json"))}
    assert records["SA-VAE"]["metrics"]["posterior_refinement"].startswith(
        "the encoder's posterior refined by 3 steps of SGD")
    assert "posterior_refinement" not in records["VRAE"]["metrics"]
    assert records["SA-VAE"]["complete"] and records["SA-VAE"]["metrics"]["iw"]["nll"] <= \
        records["SA-VAE"]["metrics"]["elbo"]["nll"]
    table = render(load_results(tmp_path / "out"), "md")
    assert "| SA-VAE (scored through its refined posterior)" in table and "| VRAE  " in table


def test_interrupted_bench_resumes_without_redoing_finished_runs(tmp_path, suite_file, monkeypatch):
    suite = load_suite(str(suite_file))
    trained: list[str] = []
    original = Bench.train_and_evaluate

    def interrupted_after_two(self, model, dataset, seed, key, text, folder, importance=True):
        if importance and len(trained) == 2:  # every run has its cheap columns; two have their IW-NLL
            raise KeyboardInterrupt
        if importance:
            trained.append(f"{model.name}/{seed}")
        return original(self, model, dataset, seed, key, text, folder, importance)

    monkeypatch.setattr(Bench, "train_and_evaluate", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        Bench(suite, tmp_path, progress=False, log=lambda _: None).run()
    records = tmp_path / "tiny" / "records"
    written = {p.name: json.loads(p.read_text()) for p in records.glob("*.json")}
    assert len(written) == 4 and sum(record["complete"] for record in written.values()) == 2
    finished = {p.name: p.read_bytes() for p in records.glob("*.json") if written[p.name]["complete"]}
    assert not list(records.glob(".*.tmp"))  # no torn record

    calls: list[tuple[str, int, bool]] = []
    monkeypatch.setattr(Bench, "train_and_evaluate", lambda self, *a, **k: (
        calls.append((a[0].name, a[2], k["importance"])), original(self, *a, **k))[1])
    logged: list[str] = []
    Bench(suite, tmp_path, progress=False, log=logged.append).run()
    unfinished = {(written[name]["model"], written[name]["seed"]) for name in written if name not in finished}
    assert sorted(calls) == sorted((model, seed, True) for model, seed in unfinished)  # only their IW passes
    assert sum("cached" in line for line in logged) == 2
    for name, content in finished.items():
        assert (records / name).read_bytes() == content
    assert len(list(records.glob("*.json"))) == 4


def test_a_run_two_suites_share_trains_once_and_the_copy_names_its_source(tmp_path, suite_file, monkeypatch):
    first = load_suite(str(suite_file))
    Bench(first, tmp_path, progress=False, log=lambda _: None).run()
    other_text = TINY_SUITE.replace('title = "tiny"', 'title = "other"').replace('name = "LSTM"', 'name = "the LM"')
    other_text = other_text.replace('configs = ["vrae"]', 'configs = ["vrae"]\nbindings = ["LATENT = 2"]')
    (tmp_path / "other.toml").write_text(other_text)
    second = load_suite(str(tmp_path / "other.toml"))
    trained: list[str] = []
    original = Bench.train_and_evaluate
    monkeypatch.setattr(Bench, "train_and_evaluate", lambda self, *a, **k: (
        trained.append(a[0].name) if not k["importance"] else None, original(self, *a, **k))[1])
    logged: list[str] = []
    Bench(second, tmp_path, progress=False, log=logged.append).run()
    assert trained == ["VRAE", "VRAE"]  # the LSTM runs (same key) are not trained again; VRAE's binding differs
    assert sum("reused" in line for line in logged) == 2
    for seed in (0, 1):
        original_path = next((tmp_path / "tiny" / "records").glob(f"lstm-synthetic-seed{seed}-*.json"))
        copy_path = next((tmp_path / "other" / "records").glob(f"the-lm-synthetic-seed{seed}-*.json"))
        kept, copied = json.loads(original_path.read_text()), json.loads(copy_path.read_text())
        assert copied["suite"] == "other" and copied["model"] == "the LM"
        assert copied["reused_from"] == f"tiny/records/{original_path.name}"
        assert copied["metrics"] == kept["metrics"] and copied["provenance"] == kept["provenance"]
    assert not (tmp_path / "other" / "runs" / json.loads(copy_path.read_text())["run_key"]).exists()


def test_a_run_interrupted_mid_training_resumes_from_its_checkpoint(tmp_path, suite_file):
    suite = load_suite(str(suite_file))
    suite.models, suite.seeds = suite.models[:1], [0]
    bench = Bench(suite, tmp_path, progress=False, log=lambda _: None)
    key, _ = bench.run_key(suite.models[0], "synthetic", 0)
    from seqvae_zoo.training.run import train_run

    train_run(["lstm"], "synthetic", tmp_path / "tiny" / "runs" / key, bindings=[*suite.bindings,
              "training.TrainingSettings.epochs = 1"], max_steps=2, progress=False,
              dataset_options=suite.dataset_options["synthetic"])
    bench.run()
    record = json.loads(next((tmp_path / "tiny" / "records").glob("*.json")).read_text())
    assert record["training"]["steps"] == 4  # 128 sentences / 32: the two remaining steps were added, not redone


def test_a_suite_without_columns_gets_the_honest_columns_of_its_kind(tmp_path, capsys):
    """A first suite of one's own need not list its table: a language-model suite shows the bounds and what the
    latent carries (the LSTM a dash where it has no latent), a summarization suite ROUGE."""
    without_columns = TINY_SUITE.split("[[columns]]")[0].replace("seeds = [0, 1]", "seeds = [0]")
    suite = tmp_path / "mine.toml"
    suite.write_text(without_columns)
    assert [column.metric for column in load_suite(str(suite)).columns] == [
        "iw.nll", "elbo.nll", "kl.z_enc", "kl.z_t", "latent.mi", "latent.au", "iw.ppl", "training.wall_seconds"]
    assert main(["bench", str(suite), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("| model"))
    assert "IW-NLL (EOS counted)" in header and "MI (aggregate posterior)" in header and "train s" in header
    lstm_row = next(line for line in table.splitlines() if line.startswith("| LSTM"))
    vrae_row = next(line for line in table.splitlines() if line.startswith("| VRAE"))
    assert lstm_row.count("–") == 4 and vrae_row.count("–") == 1  # the LSTM has no latent; VRAE has no z_t
    suite.write_text(without_columns.replace('[evaluation]\n', '[evaluation]\nkind = "summarization"\n'))
    assert [column.metric for column in load_suite(str(suite)).columns][0] == "rouge1.recall"
    suite.write_text(without_columns + '[[columns]]\nheader = "IW-NLL"\n')
    with pytest.raises(SuiteError, match="columns, if given, each have a header and a metric; missing or "
                                         "malformed: 'metric'"):
        load_suite(str(suite))


def test_a_suite_files_relative_paths_are_read_from_its_folder(tmp_path, monkeypatch):
    """A suite kept beside its corpus and gin files runs from any working directory; a path that is not beside
    it stays as written (the working directory's), and preset names and other options are left alone."""
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "corpus.txt").write_text("a b c\n")
    (folder / "mine.gin").write_text("include 'vrae.gin'\n")
    (folder / "suite.toml").write_text(
        'datasets = ["text"]\ndata_dir = "data"\n[dataset_options.text]\ntrain = "corpus.txt"\n'
        'test = "elsewhere.txt"\nlowercase = true\n[dataset_options.synthetic]\ntrain_size = 64\n'
        '[[models]]\nname = "mine"\nconfigs = ["vrae", "mine.gin", "other.gin"]\n')
    monkeypatch.chdir(tmp_path)
    suite = load_suite("project/suite.toml")
    assert suite.data_dir == str(folder / "data")
    assert suite.models[0].configs == ("vrae", str(folder / "mine.gin"), "other.gin")
    assert suite.dataset_options == {"text": {"train": str(folder / "corpus.txt"), "test": "elsewhere.txt",
                                             "lowercase": True}, "synthetic": {"train_size": 64}}


def test_bad_suites_give_clear_errors(tmp_path):
    with pytest.raises(SuiteError, match="unknown suite 'quik'. Did you mean 'quick'"):
        load_suite("quik")
    bad = tmp_path / "bad.toml"
    bad.write_text('title = "x"\nmodls = []\n')
    with pytest.raises(SuiteError, match="unknown key"):
        load_suite(str(bad))
    bad.write_text('title = "x"\ndatasets = ["ptb"]\n')
    with pytest.raises(SuiteError, match="needs models"):
        load_suite(str(bad))
    bad.write_text('datasets = ["ptb"]\n[[models]]\nname = "x"\nconfigs = ["lstm"]\nstart_first = true\n')
    with pytest.raises(SuiteError, match="model 'x' has unknown key\\(s\\) start_first; a model has name, configs, "
                                         "bindings, evaluation, starts_first"):
        load_suite(str(bad))
    bad.write_text('datasets = ["ptb"]\n[[models]]\nname = "x"\nconfigs = ["lstm"]\nstarts_first = "yes"\n')
    with pytest.raises(SuiteError, match="model 'x' sets starts_first = 'yes'; write true or false"):
        load_suite(str(bad))
    bad.write_text("title = \n")
    with pytest.raises(SuiteError, match="not valid TOML"):
        load_suite(str(bad))
    bad.write_bytes('title = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(SuiteError, match=r"bad.toml' is not UTF-8 text \(invalid continuation byte at byte 12\): "
                                         "save it as UTF-8"):
        load_suite(str(bad))
    # the byte-order mark some editors write is not part of the first key
    bad.write_bytes(b'\xef\xbb\xbftitle = "x"\ndatasets = ["ptb"]\n[[models]]\nname = "x"\nconfigs = ["lstm"]\n')
    assert load_suite(str(bad)).title == "x"
    with pytest.raises(Exception, match="no results under"):
        load_results(tmp_path / "nothing")


def test_summarization_suite_records_baselines_once_and_lists_them_first(tmp_path, suite_file, monkeypatch):
    """The harness side of a summarization suite: untrained baselines become records of their own, cached like
    runs, and head the table. (The ROUGE numbers themselves are tested in tests/test_summarization.py; the real
    paper-duc path runs in the slow test below.)"""
    import seqvae_zoo.bench.harness as harness

    calls: list[str] = []

    def fake_baselines(settings, names, corpus):
        calls.append(corpus.name)
        return {"LEAD": {"rouge1": {"recall": 0.4, "precision": 0.3, "f": 0.35}}}

    monkeypatch.setattr(harness, "evaluate_baselines", fake_baselines)
    monkeypatch.setattr(harness, "evaluate_trained",
                        lambda settings, model, vocab, corpus, seed: {"rouge1": {"recall": 0.5, "precision": 0.4,
                                                                                 "f": 0.45}})
    text = TINY_SUITE.replace('seeds = [0, 1]', 'seeds = [0]\nbaselines = ["lead"]').replace(
        '[evaluation]\n', '[evaluation]\nkind = "summarization"\n')
    text = text.split("[[columns]]")[0] + '[[columns]]\nheader = "F"\nmetric = "rouge1.f"\ndigits = 3\n'
    suite_file.write_text(text)
    suite = load_suite(str(suite_file))
    table = Bench(suite, tmp_path, progress=False, log=lambda _: None).run()
    assert Bench(suite, tmp_path, progress=False, log=lambda _: None).run() == table
    assert calls == ["synthetic"]  # scored once; the second run took the cached record
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| LEAD") and "0.350" in rows[1] and "0.450" in table


def test_paper_duc_path_end_to_end(tmp_path):
    """A 2-step VRAE and the LEAD baseline on the real DUC 2007 topics, through `seqvae bench` (in the default run:
    the real-corpus summarization path, under 20 seconds)."""
    suite = tmp_path / "duc.toml"
    suite.write_text("""
title = "duc"
datasets = ["duc2007"]
epochs = 1
max_steps = 2
baselines = ["lead"]
bindings = ["EMBEDDING = 16", "HIDDEN = 16", "LATENT = 4", "training.TrainingSettings.checkpoint_every = 0"]
[evaluation]
kind = "summarization"
[[models]]
name = "VRAE"
configs = ["vrae"]
[[columns]]
header = "F"
metric = "rouge1.f"
""")
    assert main(["bench", str(suite), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "duc" / "records").glob("*.json")]
    assert sorted(r["model"] for r in records) == ["LEAD", "VRAE"]
    assert all(0.2 < r["metrics"]["rouge1"]["f"] < 0.6 for r in records)


def test_a_number_too_large_to_read_is_printed_in_scientific_notation():
    """The per-token PPL of a model that runs away is e^36: its 22 digits would bury the table's other columns."""
    assert format_number(3810521289228106.0, 2) == "3.81e+15"
    assert format_number(5e9, 0) == "5.00e+09"
    assert format_number(839.5662, 2) == "839.57" and format_number(13927.4, 0) == "13,927"
    assert format_number(float("inf"), 2) == "inf"


def test_an_estimate_a_hair_below_zero_reads_zero_not_minus_zero():
    """The aggregate-posterior MI of a collapsed latent comes out at -0.0004, say: the table shows 0.00."""
    assert format_number(-0.0004, 2) == "0.00" and format_number(-0.004, 0) == "0"
    assert format_number(-0.006, 2) == "-0.01"


def test_a_single_runs_95_percent_interval_stands_beside_its_mean(tmp_path):
    """DUC's ROUGE gives each score a bootstrap interval: the table shows it where one run makes the row (md and
    csv); a row of several seeds shows their spread instead."""
    suite = tmp_path / "s"
    (suite / "records").mkdir(parents=True)
    (suite / "suite.json").write_text(json.dumps({
        "name": "s", "title": "t", "models": ["A", "B"], "baselines": [],
        "columns": [{"header": "R-1 F", "metric": "rouge1.f", "digits": 3}]}))
    for name, (model, seed, f, low, high) in {"a": ("A", 0, 0.4027, 0.3929, 0.4132), "b0": ("B", 0, 0.40, 0.39, 0.41),
                                              "b1": ("B", 1, 0.42, 0.41, 0.43)}.items():
        metrics = {"rouge1": {"f": f}, "intervals": {"rouge1": {"f": {"low": low, "high": high, "mean": f}}}}
        (suite / "records" / f"{name}.json").write_text(json.dumps(
            {"model": model, "seed": seed, "suite": "s", "dataset": {"name": "duc2007"}, "metrics": metrics,
             "protocol_version": "1"}))
    rows = {line.split("|")[1].strip(): line for line in render(load_results(tmp_path)).splitlines()
            if line.startswith("| A") or line.startswith("| B")}
    assert "0.403 [0.393, 0.413]" in rows["A"]
    assert "0.410 ± 0.014" in rows["B"] and "[" not in rows["B"]
    csv_lines = render(load_results(tmp_path), "csv").splitlines()
    assert csv_lines[0].endswith("R-1 F,R-1 F std,R-1 F 95% low,R-1 F 95% high")
    assert csv_lines[1].endswith(",0.4027,,0.3929,0.4132") and csv_lines[2].endswith(",,")


def test_a_record_calls_its_checkout_dirty_for_a_changed_source_not_for_tables_written_into_it(tmp_path,
                                                                                               monkeypatch):
    """benchmarks/campaign.sh copies tables into the checkout it runs from: that is not a change to the code."""
    import subprocess

    from seqvae_zoo.bench import harness

    root = tmp_path / "checkout"
    source = root / "seqvae_zoo" / "bench" / "harness.py"
    source.parent.mkdir(parents=True)
    source.write_text("# the harness\n")
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "benchmarks" / "results" / "leaderboard.md").write_text("| model |\n")
    git = ["git", "-C", str(root), "-c", "user.email=ci@example.org", "-c", "user.name=ci"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "c"]):
        subprocess.run([*git, *command], check=True)
    monkeypatch.setattr(harness, "__file__", str(source))  # git_commit() reads the checkout its module is in

    clean = harness.git_commit()
    assert clean is not None and len(clean) == 40
    (root / "benchmarks" / "results" / "leaderboard.md").write_text("| model | IW-NLL |\n")
    assert harness.git_commit() == clean
    source.write_text("# the harness, changed\n")
    assert harness.git_commit() == clean + "+dirty"


def test_a_suite_reads_ones_own_files_in_ptbs_layout_and_its_records_say_so(own_ptb_layout, tmp_path):
    """`verify = false` under the suite's [dataset_options.ptb]: the bench trains and scores on the files as they
    are, and each record names the files' own checksums and every way they differ from the published PTB."""
    suite = tmp_path / "own.toml"
    suite.write_text("""
title = "own corpus"
datasets = ["ptb"]
epochs = 1
max_steps = 2
bindings = ["EMBEDDING = 8", "HIDDEN = 8", "training.TrainingSettings.checkpoint_every = 0"]
[dataset_options.ptb]
verify = false
[evaluation]
iw_samples = 2
[[models]]
name = "LSTM"
configs = ["lstm"]
[[columns]]
header = "IW-NLL"
metric = "iw.nll"
""")
    checked = tmp_path / "checked.toml"
    checked.write_text(suite.read_text().replace("[dataset_options.ptb]\nverify = false\n", ""))
    assert main(["bench", str(checked), "--out", str(tmp_path / "refused"), "--data-dir", str(own_ptb_layout),
                 "--quiet"]) == 2
    assert not (tmp_path / "refused").exists()  # refused before the folder was made
    with pytest.warns(UserWarning, match="verify is off"):
        assert main(["bench", str(suite), "--out", str(tmp_path / "out"), "--data-dir", str(own_ptb_layout),
                     "--quiet"]) == 0
    record, = [json.loads(p.read_text()) for p in (tmp_path / "out" / "own" / "records").glob("*.json")]
    dataset = record["dataset"]
    assert dataset["options"] == {"verify": False} and len(dataset["departures_from_published"]) == 6
    assert dataset["checksums"]["ptb.test.txt"] != "8b80168b89c18661a38ef683c0dc3721"
    assert record["metrics"]["sentences"] == 40
    table = (tmp_path / "out" / "own" / "leaderboard.md").read_text()
    assert table.startswith("### own corpus: ptb read from files that are not the published ones (its checks off;")
