"""``seqvae list``, ``seqvae presets`` and ``seqvae describe PRESET``: what the zoo holds."""

from __future__ import annotations

import argparse
import inspect

from seqvae_zoo.presets import build_model, parse_config, preset_names, resolve_config
from seqvae_zoo.registry import REGISTRIES, load_components

#: The vocabulary size ``describe`` counts parameters for: PTB's 10,000 words with pad and begin-of-sentence.
DESCRIBE_VOCAB = 10002


def register(subparsers) -> None:
    listing = subparsers.add_parser("list", help="every registry with its components")
    listing.set_defaults(run=run_list)
    presets = subparsers.add_parser("presets", help="the gin presets shipped with the package")
    presets.set_defaults(run=run_presets)
    describe = subparsers.add_parser("describe", help="a preset's config and parameter count")
    describe.add_argument("config", nargs="+", metavar="PRESET_OR_GIN_FILE")
    describe.add_argument("--gin", action="append", default=[], metavar="BINDING", help="extra gin binding")
    describe.add_argument("--vocab-size", type=int, default=DESCRIBE_VOCAB)
    describe.set_defaults(run=run_describe)


def _summary(cls: type) -> str:
    """What the component is: the first paragraph of its docstring, whole, on one line."""
    return " ".join((inspect.getdoc(cls) or "").split("\n\n")[0].split())


def run_list(args: argparse.Namespace) -> int:
    load_components()
    for kind, registry in REGISTRIES.items():
        print(f"{kind}: {registry.description}")
        for name, cls in registry.items():
            print(f"  {name:<22} {_summary(cls)}")
    return 0


def run_presets(args: argparse.Namespace) -> int:
    names = preset_names()
    for name in names:
        first = resolve_config(name).read_text().splitlines()[0].lstrip("# ")
        print(f"{name:<{max(map(len, names))}}  {first}")
    return 0


def run_describe(args: argparse.Namespace) -> int:
    text = parse_config(args.config, args.gin)
    model = build_model(vocab_size=args.vocab_size, pad_id=0, bos_id=1, unk_id=3, eos_id=2)
    print(text.rstrip())
    print()
    for name, module in model.named_children():
        count = sum(p.numel() for p in module.parameters())
        print(f"# {name:<14} {count:>12,} parameters")
    print(f"# {'total':<14} {model.num_parameters():>12,} parameters (vocabulary {args.vocab_size:,})")
    return 0
