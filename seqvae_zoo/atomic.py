"""Files written whole or not at all: a temporary file beside the target, fsync, then a rename over it.

Records, tables and progress files are read by other processes (``seqvae bench --status``, a resumed run) at any
moment, and a process may be killed at any moment; neither may ever see half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_json_atomically(path: str | os.PathLike, payload: Any) -> None:
    write_text_atomically(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")
