"""Datasets read from files: where the data directory is, checksums, downloads, and the messages when files are
missing or wrong.

The data directory is the ``--data-dir`` flag, else the ``SEQVAE_DATA`` environment variable, else a user cache
directory (``$XDG_CACHE_HOME/seqvae_zoo`` or ``~/.cache/seqvae_zoo``); each dataset has its folder inside it
(``ptb/``, ``yelp/``, ``duc2007/``, ...). Missing files are downloaded when the dataset has a public address, unless
``SEQVAE_OFFLINE`` is set; every file is checked against its MD5 before it is read. A dataset's ``verify=False`` (or
``SEQVAE_VERIFY=0`` for every dataset, every command and its worker processes) reads files of one's own in a
dataset's layout as they are: what differs from the published dataset is then warned about and kept in the corpus's
metadata instead of stopping the load (the checksums, and so the fingerprint, are the files' own).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

from seqvae_zoo.data.base import Corpus, Dataset, DataError

DATA_ENV = "SEQVAE_DATA"
OFFLINE_ENV = "SEQVAE_OFFLINE"
VERIFY_ENV = "SEQVAE_VERIFY"
DOWNLOAD_TIMEOUT_S = 60
#: The departures from published datasets already warned about in this process.
_WARNED: set[str] = set()


def resolve_data_dir(flag: str | os.PathLike | None = None) -> Path:
    """The data directory: the flag, else ``$SEQVAE_DATA``, else the user cache directory."""
    if flag:
        return Path(flag).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "seqvae_zoo"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def verify_by_default() -> bool:
    """Whether datasets check their files against the published ones when not told (``SEQVAE_VERIFY``, on by
    default)."""
    switch = os.environ.get(VERIFY_ENV, "1")
    if switch not in ("0", "1"):
        raise DataError(f"{VERIFY_ENV} must be 0 (read datasets' files as they are) or 1 (check them against the "
                        f"published datasets, the default), not {switch!r}: set it to one of those or unset it")
    return switch == "1"


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_lines(path: Path, dataset: str) -> list[str]:
    """The lines of a UTF-8 text file, split at newlines only (other Unicode line breaks stay inside a line); a
    byte-order mark at its start, which some editors write, is not part of the first line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{dataset}: {path} is not UTF-8 text ({error})") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its path inside the dataset folder, its MD5 (None where no checksum is published;
    then ``lines`` is what identifies it), its expected number of lines, and the addresses it can be downloaded
    from, tried in order."""

    name: str
    md5: str | None
    lines: int | None = None
    urls: tuple[str, ...] = ()

    def describe(self) -> str:
        facts = [f"md5 {self.md5}" if self.md5 else "no published checksum"]
        if self.lines is not None:
            facts.append(f"{self.lines:,} lines")
        return f"{self.name} ({', '.join(facts)})"


class FileDataset(Dataset):
    """A dataset read from files in its folder of the data directory.

    Subclasses set ``folder``, ``files`` (what :meth:`fetch` ensures and verifies) and ``source`` (where a user
    gets the files by hand: said in the error when they are missing and cannot be downloaded), and take ``verify``
    as an option of their own (so that gin and suites can set it; None: ``SEQVAE_VERIFY`` decides): with it off, the
    files are read as they are, for a corpus of one's own in the published layout.
    """

    folder: str = ""
    files: tuple[DataFile, ...] = ()
    source: str = ""

    def __init__(self, data_dir: str | None = None, verify: bool | None = None, **options):
        verify = verify_by_default() if verify is None else verify
        if not isinstance(verify, bool):
            raise DataError(f"{self.registry_name}: verify is True (check the files against the published dataset) "
                            f"or False (read them as they are), not {verify!r}")
        super().__init__(data_dir, **options)
        self.verify = verify
        self.departures: list[str] = []

    def departs(self, difference: str, remedy: str) -> None:
        """The files differ from the published dataset by ``difference``: an error saying ``remedy`` and how to
        read them as they are, or, with ``verify`` off, a departure the corpus notes."""
        if self.verify:
            raise DataError(f"{self.registry_name}: {difference}. {remedy}; or, to read files of your own in this "
                            f"layout as they are, turn the checks off: {VERIFY_ENV}=0 in the environment, or "
                            f"--gin 'datasets.{self.registry_name}.verify = False' (in a suite: verify = false under "
                            f"[dataset_options.{self.registry_name}])")
        self.departures.append(difference)

    def make_corpus(self, splits: dict[str, list[list[str]]], checksums: dict[str, str],
                    metadata: dict | None = None, extras: dict | None = None) -> Corpus:
        """The corpus (:meth:`Dataset.make_corpus`), warning once of the departures from the published dataset
        that ``verify=False`` let through and listing them in its metadata."""
        if self.departures:
            message = (f"{self.registry_name}: verify is off and these files are not the published dataset's, read "
                       f"as they are: {'; '.join(self.departures)}")
            if message not in _WARNED:  # once a process: a bench loads a corpus for each of its runs
                _WARNED.add(message)
                warnings.warn(message, stacklevel=2)
            metadata = {**(metadata or {}), "departures_from_published": list(self.departures)}
        return super().make_corpus(splits, checksums, metadata, extras)

    def directory(self) -> Path:
        return resolve_data_dir(self.data_dir) / self.folder

    def fetch(self, files: tuple[DataFile, ...] | None = None) -> dict[str, str]:
        """Make sure the files (all of ``files`` by default) are present and intact: download what is missing
        where possible, verify every MD5. Returns file name -> md5."""
        files = self.files if files is None else files
        self.departures = []  # each load notes its own
        directory = self.directory()
        missing = [file for file in files if not (directory / file.name).is_file()]
        if missing:
            self._download(missing, directory)
        checksums = {}
        for file in files:
            path = directory / file.name
            checksums[file.name] = file_md5(path)
            if file.md5 and checksums[file.name] != file.md5:
                redownload = " or delete it to download it again" if file.urls else ""
                self.departs(f"{path} has md5 {checksums[file.name]}, expected {file.md5}: the file is damaged or "
                             f"a different version", f"Replace it with the original ({self.source}){redownload}")
        return checksums

    def read_lines(self, file: DataFile) -> list[tuple[int, str]]:
        """The lines of a fetched file that hold text, each with its line number, checked against the expected
        count. A published file has no blank line; in files of one's own, blank lines are skipped (a sentence
        without words would be scored as an end-of-sentence alone) and noted as a departure."""
        path = self.directory() / file.name
        lines = read_lines(path, self.registry_name)
        numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
        blank = len(lines) - len(numbered)
        if blank:
            self.departs(f"{path} has {blank:,} blank line{'s' if blank > 1 else ''}, skipped",
                         f"Replace it with the original ({self.source})")
        if file.lines is not None and len(numbered) != file.lines:
            self.departs(f"{path} has {len(numbered):,} lines, expected {file.lines:,}: the file is truncated or a "
                         f"different version", f"Replace it with the original ({self.source})")
        return numbered

    def _download(self, missing: list[DataFile], directory: Path) -> None:
        failures: list[str] = []
        if offline():
            failures.append(f"downloads are off ({OFFLINE_ENV} is set)")
        for file in missing:
            if failures:
                break
            if not file.urls:
                failures.append(f"{file.name} has no public download address")
            else:
                failures.extend(self._download_one(file, directory))
        if failures:
            listing = "; ".join(file.describe() for file in missing)
            raise DataError(
                f"{self.registry_name}: missing {listing} in {directory}. Could not download: {' '.join(failures)}. "
                f"Where to get them: {self.source}. Put them in {directory}/, or point --data-dir or {DATA_ENV} at "
                f"a directory whose {self.folder}/ folder holds them.")

    def _download_one(self, file: DataFile, directory: Path) -> list[str]:
        """Download one file (trying each address) and verify it; returns why it failed, empty on success."""
        target = directory / file.name
        partial = target.with_name(target.name + ".part")
        reasons = []
        for url in file.urls:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                        open(partial, "wb") as out:
                    shutil.copyfileobj(response, out)
            except OSError as error:
                reasons.append(f"{url}: {error}")
                partial.unlink(missing_ok=True)
                continue
            got = file_md5(partial)
            if file.md5 and got != file.md5:
                partial.unlink()
                reasons.append(f"{url} gave a file with md5 {got}, expected {file.md5}")
                continue
            os.replace(partial, target)
            return []
        return reasons

