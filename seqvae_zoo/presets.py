"""Gin presets: finding them, parsing them with clear errors, and building the model they describe."""

from __future__ import annotations

import codecs
import difflib
import hashlib
import io
import logging
import re
import tokenize
from importlib import resources
from pathlib import Path
from typing import Sequence

import gin

from seqvae_zoo.errors import UserError
from seqvae_zoo.model import SeqVAE
from seqvae_zoo.registry import REGISTRIES, load_components
from seqvae_zoo.training import trainer as _trainer  # noqa: F401  registers training.TrainingSettings with gin

#: Files of the configs folder that other presets include; not presets themselves.
SHARED_FILES = ("base.gin",)


class ConfigError(UserError):
    """A preset or gin file could not be found or parsed; the message names the file and line."""


def configs_dir() -> Path:
    return Path(str(resources.files("seqvae_zoo.configs")))


def preset_names() -> list[str]:
    return sorted(p.stem for p in configs_dir().glob("*.gin") if p.name not in SHARED_FILES)


def resolve_config(name_or_path: str) -> Path:
    """A preset name (``vrae_sa_aux``) or the path of a gin file."""
    path = Path(name_or_path)
    if path.suffix == ".gin" or path.parent != Path("."):
        if not path.is_file():
            raise ConfigError(f"gin file {name_or_path!r} does not exist")
        return path
    candidate = configs_dir() / f"{name_or_path}.gin"
    if name_or_path in preset_names():
        return candidate
    close = difflib.get_close_matches(name_or_path, preset_names(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown preset {name_or_path!r}.{hint} Presets: {', '.join(preset_names())}; "
                      "or give the path of a .gin file")


def parse_config(configs: Sequence[str], bindings: Sequence[str] = ()) -> str:
    """Clear gin, then parse the presets or gin files in order and the bindings last; return the config text.

    Any gin failure becomes one :class:`ConfigError` naming the file and line gin reports.
    """
    load_components()
    paths = [resolve_config(c) for c in configs]
    for path in paths:
        _check_gin_text(path)
    gin.clear_config()
    for directory in {configs_dir(), *(p.resolve().parent for p in paths)}:
        gin.add_config_file_search_path(str(directory))
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.CRITICAL)  # gin logs an error for every search path an include is not found in
    try:
        gin.parse_config_files_and_bindings([str(p) for p in paths], list(bindings), finalize_config=False)
    except SyntaxError as error:
        raise ConfigError(_binding_syntax_message(error, bindings) or _gin_message(error)) from None
    except UnicodeDecodeError as error:  # the files given were checked: one they include (gin names the include)
        raise ConfigError(f"an included gin file is not UTF-8 text: save it as UTF-8. {_gin_message(error)}") from None
    except (ValueError, KeyError, TypeError, IOError, ImportError) as error:
        raise ConfigError(_gin_message(error)) from None
    except tokenize.TokenError:  # gin's tokenizer reached the end of a file inside a bracket or string
        raise ConfigError(_unclosed_message(paths, bindings)) from None
    finally:
        root_logger.setLevel(level)
    return config_text()


def _check_gin_text(path: Path) -> None:
    """Refuse a gin file that gin would misread: text that is not UTF-8 (gin's error names no file), or a UTF-8
    byte-order mark, which some editors write and gin reads as an unexpected character."""
    raw = path.read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raise ConfigError(f"gin file {str(path)!r} starts with a byte-order mark (the UTF-8 signature some editors "
                          "write), which gin cannot read: save it as UTF-8 without one")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"gin file {str(path)!r} is not UTF-8 text ({error.reason} at byte {error.start}): save "
                          "it as UTF-8") from None


def parse_config_text(text: str) -> None:
    """Clear gin and parse a config saved with a run (its bindings are complete: no includes needed)."""
    load_components()
    gin.clear_config()
    try:
        gin.parse_config(text)
    except (ValueError, KeyError, SyntaxError, TypeError) as error:
        raise ConfigError(f"the saved config does not parse with this seqvae_zoo: {_gin_message(error)}") from None


def config_text() -> str:
    """Every binding now in effect, in gin syntax (stable, so its hash identifies the configuration)."""
    return gin.config_str()


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_model(vocab_size: int, pad_id: int, bos_id: int, unk_id: int, eos_id: int) -> SeqVAE:
    """The model of the parsed configuration, for a vocabulary with these ids."""
    try:
        return SeqVAE(vocab_size=vocab_size, pad_id=pad_id, bos_id=bos_id, unk_id=unk_id, eos_id=eos_id)
    except (ValueError, TypeError) as error:
        raise ConfigError(_gin_message(error)) from None


def _binding_syntax_message(error: SyntaxError, bindings: Sequence[str]) -> str | None:
    """Name the binding gin could not parse (gin numbers the lines of the bindings joined), and its form; None when
    the error is not in a binding (gin names the file then)."""
    lines = "\n".join(bindings).splitlines()
    if error.filename is not None or not error.lineno or error.lineno > len(lines):
        return None
    return (f"the binding {lines[error.lineno - 1].strip()!r} does not parse: {error.msg.rstrip('.')}; write each "
            "binding as name = value, e.g. 'HIDDEN = 256' or 'decoders.attentive.context_dim = 32'")


def _unclosed_message(paths: Sequence[Path], bindings: Sequence[str]) -> str:
    """Name the file (or the bindings) that ends inside an unclosed bracket or string."""
    sources = [(str(p), p.read_text()) for p in paths] + [("the --gin bindings", "\n".join(bindings))]
    for name, text in sources:
        try:
            for _ in tokenize.generate_tokens(io.StringIO(text).readline):
                pass
        except tokenize.TokenError as error:
            return (f"{name}, line {error.args[1][0] - 1}: the text ends inside an unclosed bracket or string; "
                    "close it")
    return "an included gin file ends inside an unclosed bracket or string; close it"


_UNKNOWN = re.compile(r"No configurable matching (?:reference )?'@?([^']+)'")


def _gin_message(error: BaseException) -> str:
    """gin's message, with the closest registered name when it does not know a configurable."""
    message = str(error).strip()
    if isinstance(error, SyntaxError) and error.filename:  # str() would name the file without its folder
        message = f'{error.msg}\n  In file "{error.filename}", line {error.lineno}\n    {(error.text or "").rstrip()}'
    if isinstance(error, ImportError):
        message += "\n  A gin `import` needs the module's folder on PYTHONPATH (or the module installed)."
    match = _UNKNOWN.search(message)
    if match:
        wanted = match.group(1)
        known = [f"{kind}.{name}" for kind, registry in REGISTRIES.items() for name in registry.names()]
        known += ["models.SeqVAE"]
        close = difflib.get_close_matches(wanted, known, n=1, cutoff=0.5)
        if close:
            message += f"\n  Did you mean {close[0]!r}? (`seqvae list` shows every component)"
    return message
