"""The benchmark scripts: what they time is what they say, and a bad option fails before any timing."""

import pytest
import torch

from seqvae_zoo.kernels.precision import bf16_supported


@pytest.fixture(scope="module")
def step_breakdown(benchmark_script):
    return benchmark_script("step_breakdown")


TINY = ["EMBEDDING = 8", "HIDDEN = 8", "LATENT = 1"]


class TickingClock:
    """A stand-in for time.perf_counter that advances one second per reading: a part's time is then the number of
    clock readings within it, the same on any machine, and a part timed within another is shorter than it."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_step_breakdown_times_the_attention_within_the_recurrence(step_breakdown, monkeypatch):
    monkeypatch.setattr(step_breakdown.time, "perf_counter", TickingClock())
    attentive = step_breakdown.breakdown("vrae_sa", None, batches=2, repeats=1, bindings=TINY)["fp32"]
    for direction in ("forward", "backward"):
        assert 0 < attentive[f"attention {direction}"] < attentive[f"recurrence {direction}"]
    plain = step_breakdown.breakdown("vrae", None, batches=2, repeats=1, bindings=TINY)["fp32"]
    assert "attention forward" not in plain and "recurrence forward" not in plain
    # the clocks are taken off again: the head's methods are the class's own
    from seqvae_zoo.kernels.latent_heads import AttentiveHead
    assert AttentiveHead._params.__qualname__ == "AttentiveHead._params"


def test_step_breakdown_alternates_the_precisions_pass_by_pass_and_pairs_them_in_its_ratios(step_breakdown,
                                                                                            monkeypatch):
    monkeypatch.setattr(step_breakdown.time, "perf_counter", TickingClock())
    entered, autocast = [], step_breakdown.autocast

    def recording(precision, device):
        entered.append(precision)
        return autocast(precision, device)
    monkeypatch.setattr(step_breakdown, "autocast", recording)
    results = step_breakdown.breakdown("vrae", None, batches=2, repeats=2, bindings=TINY, precisions=("fp32", "bf16"))
    assert entered == ["fp32", "fp32", "bf16", "bf16"] * 3  # a warm-up pass and two timed ones, two batches each
    # the same clock readings in both precisions (one per reading): every paired ratio is 1
    assert results["bf16"]["step ratio"] == results["bf16"]["output layer forward ratio"] == 1.0
    assert results["fp32"]["step"] == results["bf16"]["step"] > 0 and "step ratio" not in results["fp32"]


def test_step_breakdown_by_operation_puts_every_profiled_operator_in_one_kind(step_breakdown):
    parts = step_breakdown.breakdown("vrae", None, batches=2, repeats=1, bindings=TINY, by_operation=True)["fp32"]
    kinds = step_breakdown.OPERATION_ROWS[:-2]
    assert parts["products"] > 0 and parts["Adam's kernel"] > 0 and parts["softmax of the vocabulary block"] > 0
    assert not set(step_breakdown.OPERATION_ROWS) & {part for _, part in step_breakdown.ROWS}  # no clock overwritten
    assert sum(parts[kind] for kind in kinds) == pytest.approx(parts["profiled total"])
    assert parts["profiled total"] + parts["outside the operators (Python, the profiler)"] == pytest.approx(
        parts["step"])
    assert step_breakdown.operation_kind("aten::copy_", [[7, 50], [7, 50]], 50) == \
        "casts and copies of the vocabulary block"
    assert step_breakdown.operation_kind("aten::copy_", [[50, 7], [50, 7]], 50) == "casts and copies elsewhere"


def test_step_breakdown_refuses_a_bad_binding_before_reading_data(step_breakdown, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        step_breakdown.main(["--presets", "vrae_sa", "--gin", "HIDDEN = ", "--data-dir", str(tmp_path / "none")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert "parse" in error and "ptb" not in error


@pytest.fixture(scope="module")
def throughput(benchmark_script):
    return benchmark_script("throughput")


def test_throughput_counts_a_ptb_epoch_with_its_ends_of_sentence_and_tables_its_measurements(throughput):
    precisions = ["fp32", "bf16"] if bf16_supported(torch.device("cpu")) else ["fp32"]
    options = dict(data_dir=None, device="cpu", threads=0, batches=1, repeats=1, warmup=0, unseen_batches=0,
                   iw_batches=0, iw_samples=500, adam="trainer", malloc="tuned", precisions=precisions, seed=0)
    # an epoch is PTB's training split, 887,521 words and 42,068 ends of sentence
    assert throughput.corpus_batches(None, 1, 0, 0)[3] == 929_589
    # another corpus's test split, in the protocol's batches: Yelp 2013's 8,671 reviews, 420,450 tokens
    vocab, _, picked, _, test_tokens = throughput.corpus_batches(None, 0, 2, 0, "yelp13_reduced")
    assert test_tokens == 420_450 and len(picked) == 2 and vocab.size > 10_002
    result = throughput.measure_preset("lstm", options)
    training = result["training"]
    assert 0 < training["fraction_of_ceiling"] <= training["fraction_of_torch_mm_ceiling"]
    lines = throughput.table([result]).splitlines()
    assert [column.strip() for column in lines[0].split("|")[2:6]] == ["precision", "MFLOP/token", "train tok/s",
                                                                       "epoch s"]
    assert [line.split("|")[2].strip() for line in lines[2:]] == precisions  # a row per precision
    if "bf16" in precisions:  # bfloat16 against its own ceiling, the bfloat16 product's rate
        low = result["training_bf16"]
        assert low["matmul_gflops"]["bf16"] > 0 and 0 < low["fraction_of_ceiling"]
        assert low["ceiling_tokens_per_second"] / training["ceiling_tokens_per_second"] == pytest.approx(
            low["matmul_gflops"]["bf16"] / low["matmul_gflops"]["best"])
        assert low["speedup_over_fp32"] == pytest.approx(low["tokens_per_second"] / training["tokens_per_second"])


@pytest.fixture(scope="module")
def iw_nll(benchmark_script):
    return benchmark_script("iw_nll")


def test_iw_nll_clocks_every_part_of_the_estimate_and_leaves_the_model_as_it_was(iw_nll, monkeypatch):
    import torch

    from seqvae_zoo import build_model, parse_config
    from seqvae_zoo.data.batching import collate
    from seqvae_zoo.evaluation import importance

    parse_config(["vrae_sa"], TINY)
    model = build_model(11, 0, 1, 3, 2).eval()
    batch = collate([[4, 5, 6, 2], [7, 2], [8, 9, 10, 5, 2]], 0)
    logsumexp = torch.logsumexp
    monkeypatch.setattr(iw_nll, "matmul_rates", lambda device: {"best": 1e9})
    monkeypatch.setattr(iw_nll.time, "perf_counter", TickingClock())
    result = iw_nll.run(importance, model, [batch], samples=3, budget=2 ** 30, seed=0)
    parts = result["parts"]
    assert all(parts[part] > 0 for part in ("encoder", "sampling", "recurrence", "output layer", "densities",
                                             "log-sum-exp"))
    assert parts["other"] >= 0 and sum(parts.values()) == pytest.approx(result["seconds"])
    assert not {"forward", "_draw_noise", "_recurrence", "_output"} & (set(vars(model.encoder))
                                                                     | set(vars(model.decoder)))
    assert "_token_nll" not in vars(model) and torch.logsumexp is logsumexp


def test_iw_nll_clocks_the_library_lstm_of_a_deterministic_decoder(iw_nll, monkeypatch):
    from seqvae_zoo import build_model, parse_config
    from seqvae_zoo.data.batching import collate
    from seqvae_zoo.evaluation import importance

    parse_config(["vrae"], TINY)
    model = build_model(11, 0, 1, 3, 2).eval()
    batch = collate([[4, 5, 6, 2], [7, 2], [8, 9, 10, 5, 2]], 0)
    monkeypatch.setattr(iw_nll, "matmul_rates", lambda device: {"best": 1e9})
    monkeypatch.setattr(iw_nll.time, "perf_counter", TickingClock())
    parts = iw_nll.run(importance, model, [batch], samples=3, budget=2 ** 30, seed=0)["parts"]
    assert all(parts[part] > 0 for part in ("encoder", "sampling", "recurrence", "output layer", "densities"))
    assert "forward" not in vars(model.decoder.rnn)


def test_iw_nll_refuses_a_missing_checkpoint_and_an_unknown_dataset_in_one_line(iw_nll, tmp_path, capsys):
    assert iw_nll.main(["--checkpoint", str(tmp_path / "nowhere.pt"), "--batches", "1"]) == 2
    assert iw_nll.main(["--dataset", "no_such_corpus", "--batches", "1"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and "nowhere.pt" in errors[0] and "no_such_corpus" in errors[1]
    assert all(line.startswith("error: ") for line in errors)


def test_iw_nll_refuses_a_baseline_that_is_not_a_checkout(iw_nll, tmp_path):
    with pytest.raises(SystemExit, match="is not a checkout of this repository"):
        iw_nll.load_baseline(tmp_path)


def precision_record(folder, preset: str, precision: str, seed: int, iw_nll: float | None, ppl: float,
                     tokens_per_s: float) -> None:
    """A record of the precision-ptb suite with what the equivalence script reads; ``iw_nll`` None: IW pending."""
    import json

    metrics = {"paper": {"ppl": ppl}, **({"iw": {"nll": iw_nll}} if iw_nll is not None else {})}
    record = {"model": f"{preset} {precision}", "dataset": {"name": "ptb"}, "protocol_version": "1",
              "suite": "precision-ptb", "seed": seed, "configs": [preset], "complete": iw_nll is not None,
              "bindings": ["kl_schedules.linear.warmup_epochs = 1.0",
                           f'training.TrainingSettings.precision = "{precision}"'],
              "metrics": metrics, "training": {"precision": precision, "tokens_per_s": tokens_per_s}}
    (folder / "records").mkdir(parents=True, exist_ok=True)
    (folder / "records" / f"{preset}-{precision}-{seed}.json").write_text(json.dumps(record))


def test_precision_equivalence_compares_the_difference_of_means_with_the_spread_between_seeds(
        benchmark_script, tmp_path, capsys):
    script = benchmark_script("precision_equivalence")
    for precision, seed, iw, ppl, rate in (("fp32", 0, 100.0, 200.0, 1000), ("fp32", 1, 101.0, 204.0, 1100),
                                           ("bf16", 0, 100.2, 210.0, 1400), ("bf16", 1, 101.4, 211.0, 1500)):
        precision_record(tmp_path, "vrae", precision, seed, iw, ppl, rate)
    precision_record(tmp_path, "vrae_sa_aux", "fp32", 0, None, 300.0, 900)
    precision_record(tmp_path, "vrae_sa_aux", "fp32", 1, 120.0, 301.0, 900)
    precision_record(tmp_path, "vrae_sa_aux", "bf16", 0, 121.0, 302.0, 900)
    assert script.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    iw = next(line for line in lines if "| vrae " in line and "IW-NLL" in line)
    assert "100.00, 101.00" in iw and "+0.30" in iw and "1.20" in iw and "within" in iw  # |0.3| < 1.2 (bf16's)
    ppl = next(line for line in lines if "| vrae " in line and "recon. PPL" in line)
    assert "+8.50" in ppl and "4.00" in ppl and "OUTSIDE" in ppl
    rate = next(line for line in lines if "| vrae " in line and "tokens/s" in line)
    assert "1.38x" in rate  # 1450 / 1050
    for metric in ("IW-NLL", "recon. PPL"):  # one bf16 seed, and one fp32 seed's IW-NLL pending: no verdict yet
        line = next(line for line in lines if "| vrae_sa_aux " in line and metric in line)
        assert "needs two seeds of each precision" in line
    assert "pending" in next(line for line in lines if "| vrae_sa_aux " in line and "IW-NLL" in line)
    assert "warmup_epochs" not in "\n".join(lines)  # a binding every run has does not name a preset
    assert script.main([str(tmp_path / "nothing")]) == 2
    assert "no records in" in capsys.readouterr().err


def test_summary_lengths_leaves_out_each_summarys_cut_sentence_and_compares_with_the_candidates(
        benchmark_script, tmp_path, capsys):
    script = benchmark_script("summary_lengths")
    from seqvae_zoo.data.loading import load_dataset
    from seqvae_zoo.summarization.pipeline import nist_name, topics_of

    topics = topics_of(load_dataset("duc2007"))[:2]
    system = tmp_path / "mine"
    system.mkdir()
    (system / nist_name(topics[0], "mine", 250)).write_text("one two three four .\nfive six .\ncut here\n")
    (system / nist_name(topics[1], "mine", 250)).write_text("a b c d e f .\ncut\n")
    [row] = script.length_rows(tmp_path, topics_of(load_dataset("duc2007")), 250, min_words=8)
    name, summarized, sentences, whole, median, pool, ratio = row
    assert (name, summarized, sentences) == ("mine", 2, 2.5)
    assert whole == (5 + 3 + 7) / 3 and median == 5  # the last line of each summary is not counted
    candidates = [s.word_count for topic in topics for s in topic.sentences() if s.word_count >= 8
                  and s.text.rstrip("'\")")[-1:] in ".?!"]
    assert pool == pytest.approx(sum(candidates) / len(candidates)) and ratio == pytest.approx(whole / pool)

    (system / nist_name(topics[0], "mine", 250)).rename(system / "D0701.M.100.A.mine")
    (system / nist_name(topics[1], "mine", 250)).unlink()
    assert script.main([str(tmp_path)]) == 2
    assert "holds no summary of this dataset's topics at 250 words" in capsys.readouterr().err
    assert script.main([str(tmp_path / "mine")]) == 2
    assert "no system folders in" in capsys.readouterr().err


def test_ranker_signal_scores_a_ranking_by_relevance_as_one_and_its_reverse_as_minus_one(benchmark_script, tmp_path,
                                                                                       capsys):
    script = benchmark_script("ranker_signal")
    from seqvae_zoo.data.loading import load_dataset
    from seqvae_zoo.summarization.pipeline import Summarizer, topics_of
    from seqvae_zoo.summarization.rankers.base import Ranker
    from seqvae_zoo.summarization.selection import SelectionSettings

    assert script.ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert script.spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)

    class ByRelevance(Ranker):
        """Ranks by each sentence's own ROUGE-1 precision against its topic's references (or its reverse)."""

        uses_representation = False

        def __init__(self, sign: int):
            self.sign = sign

        def rank(self, item):
            references = [script.tokens(r.text, 250) for r in item.topic.references]
            return sorted(item.candidates, key=lambda i: -self.sign * script.relevance(item.sentences[i].text,
                                                                                        references))

    corpus = load_dataset("duc2007")
    topics = [topic for topic in topics_of(corpus) if topic.references][:2]
    rows = script.signal_rows([Summarizer("best", "best", ByRelevance(1)), Summarizer("worst", "worst",
                                                                                   ByRelevance(-1))],
                              topics, corpus, SelectionSettings())
    oracle, best, worst = rows
    assert oracle[1] == 2 and oracle[2] == pytest.approx(1.0, abs=1e-3)  # ties in relevance keep it under 1
    assert best[1:5] == oracle[1:5]
    assert worst[2] == pytest.approx(-1.0, abs=1e-3) and worst[3] == 0 and worst[4] < 1.0 < best[4]

    assert script.main([str(tmp_path / "missing.pt")]) == 2
    assert "does not exist: give a run folder's checkpoint.pt or best.pt" in capsys.readouterr().err


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="this CPU has no native bfloat16 products")
def test_output_layer_alternates_its_configurations_and_puts_the_block_back(benchmark_script, monkeypatch, capsys):
    output_layer = benchmark_script("output_layer")
    from seqvae_zoo.kernels import output
    default, seen, fused = output.CONVERTED_BLOCK_ELEMENTS, [], output.linear_cross_entropy

    def recording(*args):
        seen.append((torch.is_autocast_enabled("cpu"), output.CONVERTED_BLOCK_ELEMENTS))
        return fused(*args)
    monkeypatch.setattr(output, "linear_cross_entropy", recording)
    seconds = output_layer.time_configurations(rows=70, hidden=8, vocabulary=300, blocks=[64, 5000], repeats=2)
    assert list(seconds) == ["fp32", "bf16, 64 rows", "bf16, 5000 rows"] and all(len(v) == 2 for v in seconds.values())
    one_pass = [(False, default), (True, 64 * 300), (True, 5000 * 300)]
    assert seen == one_pass * 3  # an untimed pass, then the two timed ones, each configuration in turn
    assert output.CONVERTED_BLOCK_ELEMENTS == default
    assert output_layer.main(["--blocks", "64", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --rows, --hidden, --vocabulary, --repeats and every --blocks")
