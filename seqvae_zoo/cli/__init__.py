"""The ``seqvae`` command line: one module per subcommand, each with ``register(subparsers)``.

Every module of this folder is imported, so a new subcommand is one new file. Errors caused by the user's input
(:class:`seqvae_zoo.errors.UserError`) print as one line without a traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import sys
import warnings

from seqvae_zoo.errors import UserError
from seqvae_zoo.training.memory import keep_freed_memory
from seqvae_zoo.training.openmp import short_openmp_waits


def build_parser() -> argparse.ArgumentParser:
    from seqvae_zoo import __version__

    parser = argparse.ArgumentParser(prog="seqvae", description="A model zoo for sequence VAEs.")
    parser.add_argument("--version", action="version", version=f"seqvae_zoo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").register(subparsers)
    return parser


#: What gin appends to an exception raised inside a configurable, one line per enclosing call, innermost first.
GIN_CALL_CONTEXT = re.compile(r"\n\s+In call to configurable '([^'\n]*)' \([^\n]*\)")


def on_one_line(message: str) -> str:
    """The message with gin's chain of calls on the same line, outermost first: which component refused."""
    calls = GIN_CALL_CONTEXT.findall(message)
    message = GIN_CALL_CONTEXT.sub("", message)
    return f"{message} (gin call: {' > '.join(reversed(calls))})" if calls else message


#: This package's folder: warnings raised from it are the user's to read, one line each.
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_line_warnings(format_warning):
    """``warnings.formatwarning`` for the command line: a warning raised by this package as ``warning: message``
    (no source line, no category: it is about the user's input), any other as ``format_warning`` gives it."""
    def format(message, category, filename, lineno, line=None):
        if os.path.abspath(filename).startswith(PACKAGE_DIR + os.sep):
            return f"warning: {message}\n"
        return format_warning(message, category, filename, lineno, line)
    return format


def main(argv: list[str] | None = None) -> int:
    short_openmp_waits()  # first: the subcommands' modules load torch, and its OpenMP runtime reads its settings then
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    from seqvae_zoo.data.files import verify_by_default  # both load torch: imported after short_openmp_waits
    from seqvae_zoo.kernels.matmul import onednn_linear_available
    format_warning, warnings.formatwarning = warnings.formatwarning, one_line_warnings(warnings.formatwarning)
    try:
        # a bad SEQVAE_ONEDNN_MATMUL or SEQVAE_VERIFY stops the command before it writes anything
        onednn_linear_available()
        verify_by_default()
        return args.run(args) or 0
    except UserError as error:
        print(f"error: {on_one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `seqvae presets | head`: the reader has what it wanted; no traceback at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a command ended by SIGPIPE
    finally:
        warnings.formatwarning = format_warning
