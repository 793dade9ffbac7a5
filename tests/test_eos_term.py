"""benchmarks/eos_term.py: the paper-protocol NLL split into word terms and the end-of-sentence term."""

import pytest
import torch


@pytest.fixture(scope="module")
def eos_term(benchmark_script):
    return benchmark_script("eos_term")


def test_the_two_parts_add_up_to_the_paper_nll_and_count_one_end_per_sentence(eos_term, tiny_run_dir):
    from seqvae_zoo.data.loading import load_dataset
    from seqvae_zoo.evaluation.protocol import SplitBatches, evaluate
    from seqvae_zoo.training.checkpoint import load_checkpoint

    loaded = load_checkpoint(tiny_run_dir)
    corpus = load_dataset("synthetic", **loaded.state["dataset_options"])
    batches = SplitBatches(loaded.vocab, corpus, "test").batches
    sums = eos_term.split_nll(loaded.model, batches, loaded.vocab.eos_id)
    reference = evaluate(loaded.model, batches, iw_samples=1)
    assert sums["sentences"] == reference["sentences"] == 40
    assert sums["words"] == reference["words"]
    assert (sums["words_nll"] + sums["eos_nll"]) / 40 == pytest.approx(reference["paper"]["nll"], rel=1e-5)
    assert 0 < sums["eos_nll"] < sums["words_nll"]
    assert "_token_nll" not in vars(loaded.model), "the model's own scoring is restored"
    assert torch.is_grad_enabled(), "autograd is back on after the measurement"


def test_per_step_latents_from_the_posterior_score_the_reconstruction_through_the_attention(eos_term, tiny_run_dir,
                                                                                           capsys):
    """VRAE-SA's z_t drawn from q(z_t | h, c_t), which reads the encoded sentence, give another reconstruction term
    than the protocol's prior means; the printout names the mode."""
    nll = {}
    for mode in ("prior_mean", "posterior"):
        assert eos_term.main([str(tiny_run_dir), "--latent-mode", mode]) == 0
        out = capsys.readouterr().out
        assert f"latents: {mode}" in out.splitlines()[0]
        nll[mode] = float(out.split("NLL per sentence with it: ")[1].split(",")[0])
    assert nll["posterior"] != nll["prior_mean"]


def test_a_missing_run_is_one_line_and_exit_2(eos_term, tmp_path, capsys):
    assert eos_term.main([str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: checkpoint") and error.count("\n") == 1
