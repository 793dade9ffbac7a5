"""Presets and the `seqvae list | presets | describe` commands, with the messages a user gets for a bad name or
a bad gin file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from seqvae_zoo import build_model, parse_config, preset_names
from seqvae_zoo.cli import main
from seqvae_zoo.presets import ConfigError, configs_dir
from seqvae_zoo.registry import REGISTRIES

#: The paper's models (Chien & Wang 2019) and the zoo's methods of other papers.
PAPER_PRESETS = ["lstm", "vrae", "vrae_sa", "vrae_sa_aux", "vrae_sa_aux_literal"]
ZOO_PRESETS = ["aggressive", "beta_vae", "bn_vae_06", "bn_vae_07", "bowman", "cyclical", "delta_vae", "free_bits_reset",
               "sa_vae", "skip_vae", "transformer_vae", "vamp_vae", "vmf_vae"]
PRESETS = sorted(PAPER_PRESETS + ZOO_PRESETS)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def describe_total(out: str) -> int:
    match = re.search(r"^# total\s+([\d,]+) parameters", out, flags=re.M)
    assert match, out
    return int(match.group(1).replace(",", ""))


def test_the_presets_are_found_and_the_shared_base_is_not_one():
    assert preset_names() == PRESETS
    assert (configs_dir() / "base.gin").is_file()


def test_the_quickstarts_sample_of_seqvae_presets_is_what_it_prints(capsys):
    quickstart = (Path(__file__).resolve().parents[1] / "docs" / "quickstart.md").read_text()
    sample = re.search(r"^\$ seqvae presets\n(.*?)^```", quickstart, flags=re.M | re.S)
    assert sample, "docs/quickstart.md has no sample of `seqvae presets`"
    status, out, _ = run_cli(capsys, "presets")
    assert status == 0 and sample.group(1) == out


def test_presets_lists_each_preset_with_its_description(capsys):
    status, out, _ = run_cli(capsys, "presets")
    assert status == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == PRESETS
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines), "every preset's first line describes it"


def test_list_shows_every_registry_and_each_component_on_one_line(capsys):
    status, out, _ = run_cli(capsys, "list")
    assert status == 0
    for kind, registry in REGISTRIES.items():
        assert re.search(rf"^{kind}: \S", out, flags=re.M), f"registry {kind} missing"
        for name in registry.names():
            assert re.search(rf"^  {re.escape(name)}\s+\S", out, flags=re.M), f"{kind} {name} missing"


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_describe_prints_the_operative_config_and_the_parameter_count(capsys, preset):
    status, out, err = run_cli(capsys, "describe", preset)
    assert status == 0 and err == ""
    expected_decoder = {"lstm": "lstm", "vrae": "lstm"}.get(preset, "attentive")
    assert f"SeqVAE.decoder = @decoders.{expected_decoder}" in out
    assert ("SeqVAE.encoder = None" in out) == (preset == "lstm")
    assert ("context_prediction.weight = 1.0" in out) == preset.startswith("vrae_sa_aux")
    if "aux" in preset:
        bounded = preset == "vrae_sa_aux"  # the literal form: learned variance, gradient into c_t
        assert f"context_prediction.unit_variance = {bounded}" in out
        assert f"context_prediction.detach_target = {bounded}" in out
    parse_config([preset])
    torch.manual_seed(0)
    assert describe_total(out) == build_model(vocab_size=10002, pad_id=0, bos_id=1, unk_id=3, eos_id=2).num_parameters()


def test_describe_takes_a_gin_file_and_bindings_applied_last(capsys, tmp_path):
    config = tmp_path / "narrow_vrae.gin"
    config.write_text("include 'vrae.gin'\nHIDDEN = 64\n")
    _, paper_out, _ = run_cli(capsys, "describe", "vrae", "--vocab-size", "100")
    status, narrow_out, _ = run_cli(capsys, "describe", str(config), "--vocab-size", "100")
    assert status == 0 and describe_total(narrow_out) < describe_total(paper_out)
    status, rebound_out, _ = run_cli(capsys, "describe", str(config), "--gin", "HIDDEN = 256", "--vocab-size", "100")
    assert status == 0 and describe_total(rebound_out) == describe_total(paper_out)


def test_describe_of_a_misspelled_preset_exits_2_with_one_line(capsys):
    status, out, err = run_cli(capsys, "describe", "vrae_sa_auxx")
    assert status == 2 and out == ""
    assert err.splitlines() == [
        f"error: unknown preset 'vrae_sa_auxx'. Did you mean 'vrae_sa_aux'? Presets: {', '.join(PRESETS)}; or give "
        "the path of a .gin file"]


@pytest.mark.parametrize("preset, binding, message", [
    ("vrae", "models.SeqVAE.init_range = 0", "error: models.SeqVAE.init_range is the half-width"),
    ("bn_vae_06", "latents.bn_gaussian.gamma = -1", "error: latents.bn_gaussian.gamma is the fixed scale"),
])
def test_a_bad_value_inside_nested_components_is_one_line_without_gins_call_chain(capsys, preset, binding, message):
    status, out, err = run_cli(capsys, "describe", preset, "--gin", binding)
    assert status == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(message), err
    assert err.rstrip().endswith(f"{binding.split('.')[1]})"), err


@pytest.mark.parametrize("preset, binding, message, call", [
    ("vrae", "LATENT = 0", "encoders.lstm.latent_dim must be a positive integer; got 0: the dimensions of z_enc (a "
     "model without one is the lstm preset)", "SeqVAE > lstm"),
    ("vrae_sa", "decoders.attentive.latent_dim = 0", "decoders.attentive.latent_dim must be a positive integer; got "
     "0: the dimensions of each z_t (decoders.lstm has no per-step latents)", "SeqVAE > attentive > stochastic"),
    ("vrae_sa_aux", "decoders.attentive.attention_size = 0", "decoders.attentive.attention_size must be a positive "
     "integer; got 0", "SeqVAE > attentive"),
    ("lstm", "HIDDEN = 2.5", "decoders.lstm.hidden_size must be a positive integer; got 2.5", "SeqVAE > lstm"),
    ("transformer_vae", "decoders.transformer.heads = 0", "decoders.transformer.heads must be a positive integer; "
     "got 0", "SeqVAE > transformer"),
])
def test_a_size_of_no_width_is_refused_before_a_layer_is_built(capsys, preset, binding, message, call):
    """torch builds a latent of size 0 (it trains as a language model with a KL of 0) and fails on a negative or
    fractional one with a message about tensors: the binding is named instead."""
    status, out, err = run_cli(capsys, "describe", preset, "--gin", binding)
    assert status == 2 and out == ""
    assert err.splitlines() == [f"error: {message} (gin call: {call})"]


def test_a_missing_gin_file_is_named(capsys, tmp_path):
    status, _, err = run_cli(capsys, "describe", str(tmp_path / "nowhere.gin"))
    assert status == 2 and err.splitlines() == [f"error: gin file '{tmp_path / 'nowhere.gin'}' does not exist"]


BAD_GIN_FILES = {
    "misspelled parameter": ("decoders.lstm.hiden_size = 3",
                             [r"Configurable 'decoders.lstm' doesn't have a parameter named 'hiden_size'"]),
    "misspelled configurable": ("decoders.lstmm.hidden_size = 3",
                                [r"No configurable matching 'decoders.lstmm'", r"Did you mean 'decoders.lstm'\?"]),
    "misspelled reference": ("models.SeqVAE.decoder = @decoders.atentive",
                             [r"No configurable matching reference '@decoders.atentive'",
                              r"Did you mean 'decoders.attentive'\?"]),
    "syntax error": ("decoders.lstm.hidden_size = 3 3", [r"Expected newline"]),
    "unclosed bracket": ("models.SeqVAE.aux_losses = [@aux_losses.context_prediction",
                         [r"ends inside an unclosed bracket or string"]),
    "missing include": ("include 'vrea.gin'", [r"Unable to open file: vrea.gin"]),
    "failed import": ("import seqvae_no_such_module", [r"No module named 'seqvae_no_such_module'", r"PYTHONPATH"]),
}


@pytest.mark.parametrize("problem", list(BAD_GIN_FILES))
def test_a_bad_gin_file_gives_one_message_naming_the_file_and_line(capsys, tmp_path, problem):
    line, patterns = BAD_GIN_FILES[problem]
    config = tmp_path / "bad.gin"
    config.write_text(f"# a preset with a mistake on line 3\ninclude 'vrae.gin'\n{line}\n")
    status, out, err = run_cli(capsys, "describe", str(config))
    assert status == 2 and out == ""
    assert err.startswith("error: ") and "Traceback" not in err
    assert re.search(rf"{re.escape(str(config))}\"?, line 3", err), err
    for pattern in patterns:
        assert re.search(pattern, err), err


def test_a_gin_file_gin_would_misread_is_named_with_what_to_do(capsys, tmp_path):
    """Text that is not UTF-8 (gin's own error names no file) and a UTF-8 byte-order mark (an invisible
    "unexpected token"), given or included."""
    signed, latin, including = tmp_path / "signed.gin", tmp_path / "latin.gin", tmp_path / "including.gin"
    signed.write_bytes(b"\xef\xbb\xbfinclude 'vrae.gin'\n")
    latin.write_bytes("include 'vrae.gin'\n# caf\xe9\n".encode("latin-1"))
    including.write_text("include 'latin.gin'\n")
    for config, message in ((signed, f"error: gin file {str(signed)!r} starts with a byte-order mark"),
                            (latin, f"error: gin file {str(latin)!r} is not UTF-8 text (invalid continuation byte "
                                    "at byte 24): save it as UTF-8"),
                            (including, "error: an included gin file is not UTF-8 text: save it as UTF-8.")):
        status, out, err = run_cli(capsys, "describe", str(config))
        assert status == 2 and out == "" and err.startswith(message), err


def test_a_bad_command_line_binding_is_named_as_such(capsys):
    status, _, err = run_cli(capsys, "describe", "vrae", "--gin", "decoders.lstm.hiden_size = 3")
    assert status == 2
    assert "doesn't have a parameter named 'hiden_size'" in err and "In bindings string line 1" in err


@pytest.mark.parametrize("binding", ["HIDDEN = ", "HIDDEN 8", "= 3"])
def test_a_command_line_binding_that_does_not_parse_is_quoted_with_the_form_to_use(capsys, binding):
    status, out, err = run_cli(capsys, "describe", "vrae", "--gin", "EMBEDDING = 8", "--gin", binding)
    assert status == 2 and out == ""
    assert err.startswith(f"error: the binding {binding.strip()!r} does not parse: ") and err.count("\n") == 1
    assert "write each binding as name = value" in err


def test_a_value_the_model_cannot_use_is_a_config_error_naming_the_configurable(capsys):
    status, _, err = run_cli(capsys, "describe", "vrae_sa", "--gin", "models.SeqVAE.encoder = None")
    assert status == 2
    assert "decoder 'attentive' has a posterior that reads the encoder" in err
    assert err.splitlines() == [err.rstrip("\n")]
    assert err.rstrip().endswith("(gin call: SeqVAE > attentive > stochastic)")


def test_an_aux_loss_without_the_decoder_it_reads_is_refused():
    parse_config(["vrae"], ["models.SeqVAE.aux_losses = [@aux_losses.context_prediction]"])
    with pytest.raises(ConfigError, match=r"aux loss 'context_prediction' needs a decoder that provides context_prior "
                                          r"\(the predicted attention context .*decoder 'lstm' provides nothing. Use a "
                                          r"decoder that does \(models.SeqVAE.decoder = @decoders.attentive\)"):
        build_model(vocab_size=20, pad_id=0, bos_id=1, unk_id=3, eos_id=2)


def test_the_paper_sizes_are_shared_by_every_preset_through_the_base_file():
    base = (configs_dir() / "base.gin").read_text()
    for line in ("EMBEDDING = 512", "HIDDEN = 256", "LATENT = 32", "INPUT_DROPOUT = 0.5"):
        assert re.search(rf"^{re.escape(line)}\b", base, flags=re.M)
    for preset in PRESETS:
        text = (configs_dir() / f"{preset}.gin").read_text()
        assert re.search(r"^include '(base|vrae_sa|vrae_sa_aux)\.gin'", text, flags=re.M), preset
        assert not re.search(r"^(EMBEDDING|HIDDEN|LATENT) =", text, flags=re.M), f"{preset} redefines a size"


def test_an_example_config_documented_in_docs_builds(capsys, monkeypatch):
    """docs/adding-a-variant.md: a decoder in one file and a gin file that imports it."""
    from plugin_fixture import EXAMPLE_GIN, isolated_registrations

    with isolated_registrations(monkeypatch):
        monkeypatch.syspath_prepend(str(EXAMPLE_GIN.parent))
        status, out, err = run_cli(capsys, "describe", str(EXAMPLE_GIN), "--gin", "HIDDEN = 32", "--vocab-size", "50")
        assert status == 0, err
        assert "SeqVAE.decoder = @decoders.gru" in out
        assert describe_total(out) > 0


def test_describe_text_of_a_preset_is_stable(capsys):
    """The operative config identifies a run (its hash keys the bench cache): the same preset prints the same."""
    _, first, _ = run_cli(capsys, "describe", "vrae_sa_aux")
    _, second, _ = run_cli(capsys, "describe", "vrae_sa_aux")
    assert first == second



def test_a_reader_that_stops_early_gets_no_traceback():
    """`seqvae presets | head -1`: the pipe is closed before the listing is written; the command ends quietly, as
    SIGPIPE would end it, with nothing on stderr."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: every write fails, whatever the timing
    try:
        done = subprocess.run([sys.executable, "-c", "import sys; from seqvae_zoo.cli import main; "
                               "sys.exit(main(['presets']))"], stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr.decode()
    assert done.stderr.decode() == ""
