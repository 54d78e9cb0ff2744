"""Where the demo data comes from: two pinned PyPI wheels used as plain data containers.

The wheels are fetched with ``pip download`` (never installed), checked against a
pinned sha256, and only the needed data members are extracted, into
``<cache>/sources/<wheel>-<version>/`` with a sha256 stamp:

* ``bible-alignments==0.4.2`` (data CC-BY-4.0, code MIT; Clear Bible / Biblica):
  ``data/sources/SBLGNT.tsv`` (the SBL Greek New Testament with coarse POS tags),
  ``data/eng/targets/BSB/{ot,nt}_BSB.tsv`` (the Berean Standard Bible, public
  domain, one token per row) and ``data/eng/alignments/BSB/SBLGNT-BSB-manual.json``
  (Biblica's manual Greek->English word alignments, CC-BY-4.0, 115,008 records).
* ``turkish-treebanks==1.0.0`` (Apache-2.0; Google Research): the Turkish Web
  Treebank, ``data/web.conllu`` and ``data/wiki.conllu``.

Every error raised on purpose is a :class:`DemoDataError` with a one-line message.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .textio import sha256_file

__all__ = [
    "BIBLE_ALIGNMENTS", "TURKISH_TREEBANKS", "PINS", "CACHE_ENV_VAR", "DEFAULT_CACHE_DIR",
    "SBLGNT_MEMBER", "BSB_OT_MEMBER", "BSB_NT_MEMBER", "ALIGNMENT_MEMBER", "TWT_MEMBERS",
    "DemoDataError", "DownloadError", "ChecksumMismatchError", "DataFormatError",
    "WheelPin", "Downloader", "Reporter", "resolve_cache_dir", "pip_download", "verify_checksum", "ensure_source",
]

CACHE_ENV_VAR = "XLINT_DATA_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/xlint/data")
STAMP_NAME = ".xlint-sha256"

SBLGNT_MEMBER = "data/sources/SBLGNT.tsv"
BSB_OT_MEMBER = "data/eng/targets/BSB/ot_BSB.tsv"
BSB_NT_MEMBER = "data/eng/targets/BSB/nt_BSB.tsv"
ALIGNMENT_MEMBER = "data/eng/alignments/BSB/SBLGNT-BSB-manual.json"
TWT_MEMBERS: tuple[str, ...] = ("data/web.conllu", "data/wiki.conllu")


@dataclass(frozen=True)
class WheelPin:
    """A PyPI wheel used only as a container of data files."""

    name: str
    version: str
    sha256: str
    licence: str
    homepage: str
    attribution: str
    members: tuple[str, ...]

    @property
    def requirement(self) -> str:
        """The pip requirement string, e.g. ``bible-alignments==0.4.2``."""
        return f"{self.name}=={self.version}"

    @property
    def dirname(self) -> str:
        """Folder name of the extracted files under ``sources/``."""
        return f"{self.name}-{self.version}"


BIBLE_ALIGNMENTS = WheelPin(
    name="bible-alignments",
    version="0.4.2",
    sha256="84f6b15e706657777824aac811567cb5cb2b38ad2b94497209f5f3c3f67b0984",
    licence="data CC-BY-4.0 (BSB text public domain); code MIT",
    homepage="https://github.com/Clear-Bible/Alignments",
    attribution=(
        "SBLGNT text Copyright 2010 by the Society of Biblical Literature and Logos Bible "
        "Software (CC-BY-4.0); word data derived from Clear Bible's MACULA Greek Linguistic "
        "Datasets, https://github.com/Clear-Bible/macula-greek/ (CC-BY-4.0); Berean Standard "
        "Bible (public domain); manual SBLGNT-BSB word alignments by Biblica (CC-BY-4.0); "
        "packaged as bible-alignments (Bible Word Alignments, (c) 2022 Clear Bible, Inc.; "
        "maintainer Sean Boisen, Biblica)"
    ),
    members=(SBLGNT_MEMBER, BSB_OT_MEMBER, BSB_NT_MEMBER, ALIGNMENT_MEMBER),
)

TURKISH_TREEBANKS = WheelPin(
    name="turkish-treebanks",
    version="1.0.0",
    sha256="5a009c29a8e96e8f7e25059d59ac293c3baead6d746bf0fa4c9d3349b1e37ba0",
    licence="Apache-2.0",
    homepage="https://github.com/google-research-datasets/turkish-treebanks",
    attribution="Turkish Web Treebank (TWT), Google Research, Apache-2.0",
    members=TWT_MEMBERS,
)

PINS: tuple[WheelPin, ...] = (BIBLE_ALIGNMENTS, TURKISH_TREEBANKS)

# --------------------------------------------------------------------------- errors


class DemoDataError(RuntimeError):
    """Base class of every error the demo-data modules raise on purpose (one-line messages)."""


class DownloadError(DemoDataError):
    """pip could not download a pinned wheel (network, index, ...)."""


class ChecksumMismatchError(DemoDataError):
    """A downloaded wheel does not have the pinned sha256."""


class DataFormatError(DemoDataError):
    """A source file does not have the expected format."""


Downloader = Callable[["WheelPin", Path], Path]
Reporter = Callable[[str], None]

# --------------------------------------------------------------------------- fetching


def resolve_cache_dir(cache_dir: Path | str | None = None) -> Path:
    """Return the absolute cache dir: the argument, else ``$XLINT_DATA_DIR``, else the default."""
    chosen = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser().absolute()


_NETWORK_MARKERS = (
    "NewConnectionError", "Failed to establish", "name resolution", "timed out", "ProxyError", "SSLError",
)


def _pip_failure_reason(output: str, returncode: int) -> str:
    """One line saying why pip failed: its last message, plus a hint on network trouble."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"pip exited with status {returncode}"
    if any(marker in output for marker in _NETWORK_MARKERS):
        reason += " (the package index could not be reached: check the network or pip's index settings)"
    return reason


def pip_download(pin: WheelPin, dest: Path) -> Path:
    """Download the pinned wheel (only the wheel, no dependencies) into ``dest`` with pip."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "--retries", "2",
        pin.requirement, "--dest", str(dest),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = _pip_failure_reason(result.stderr or result.stdout or "", result.returncode)
        raise DownloadError(f"could not download {pin.requirement} with pip: {reason}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DownloadError(f"pip download of {pin.requirement} produced {len(wheels)} wheel files, expected 1")
    return wheels[0]


def verify_checksum(path: Path, pin: WheelPin) -> None:
    """Raise ChecksumMismatchError (after deleting ``path``) unless it has the pinned sha256."""
    actual = sha256_file(path)
    if actual != pin.sha256:
        path.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"checksum mismatch for {pin.requirement}: expected sha256 {pin.sha256}, got {actual}; "
            "the downloaded file was deleted"
        )


def _extract_members(wheel: Path, pin: WheelPin, dest: Path) -> None:
    """Extract the pinned data members of ``wheel`` into ``dest``."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        missing = [member for member in pin.members if member not in names]
        if missing:
            raise DataFormatError(f"{pin.requirement}: wheel lacks {', '.join(missing)}")
        for member in pin.members:
            target = dest / member
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink)


def _is_extracted(folder: Path, pin: WheelPin) -> bool:
    """Whether ``folder`` holds a complete extraction of ``pin`` (stamp matches the sha)."""
    stamp = folder / STAMP_NAME
    return (
        stamp.is_file()
        and stamp.read_text(encoding="utf-8").strip() == pin.sha256
        and all((folder / member).is_file() for member in pin.members)
    )


def ensure_source(
    root: Path, pin: WheelPin, downloader: Downloader, report: Reporter, *, force: bool = False
) -> Path:
    """Return ``root/sources/<wheel>-<version>``, downloading and extracting it if needed.

    Work happens in a temporary folder under ``root`` that is renamed into place only
    when complete, so a failure (download, checksum, extraction) leaves nothing behind.
    """
    final = root / "sources" / pin.dirname
    if not force and _is_extracted(final, pin):
        report(f"{pin.requirement}: using cached {final}")
        return final
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        started = time.monotonic()
        (work / "download").mkdir()
        wheel = downloader(pin, work / "download")
        size_mb = wheel.stat().st_size / 1e6
        report(f"{pin.requirement}: downloaded {size_mb:.1f} MB in {time.monotonic() - started:.1f}s")
        verify_checksum(wheel, pin)
        staged = work / "extracted"
        _extract_members(wheel, pin, staged)
        (staged / STAMP_NAME).write_text(pin.sha256 + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final

