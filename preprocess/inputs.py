"""Where each language's raw text comes from: one file, or the user's own split files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from .errors import PreprocessError
from .languages import Language, parse_languages
from .splits import SPLITS, WHOLE_FILE_SOURCE
from .textio import check_input_file

#: File names of the user's own splits inside a language's split directory.
SPLIT_FILE_NAMES = {split: f"{split}.txt" for split in SPLITS}


@dataclass(frozen=True)
class LanguageInput:
    """A language and its raw text files, keyed ``"all"`` or by split name."""

    language: Language
    sources: Mapping[str, Path]

    @property
    def has_own_splits(self) -> bool:
        return WHOLE_FILE_SOURCE not in self.sources


def parse_input_spec(spec: str) -> tuple[str, Path | None]:
    """Split ``LANG=PATH`` into its parts; a bare ``LANG`` gives ``(LANG, None)``."""
    code, separator, path = spec.partition("=")
    if separator and not path:
        raise PreprocessError(f"input {spec!r} names no path after '='")
    return code, Path(path) if separator else None


def _split_files(directory: Path, code: str) -> dict[str, Path]:
    if not directory.is_dir():
        raise PreprocessError(f"{code}: split directory {directory} does not exist")
    files = {split: directory / name for split, name in SPLIT_FILE_NAMES.items() if (directory / name).exists()}
    if "train" not in files:
        raise PreprocessError(f"{code}: split directory {directory} has no {SPLIT_FILE_NAMES['train']}")
    return files


def _sources(language: Language, path: Path | None, split_dir: Path | None) -> dict[str, Path]:
    if path is None:
        if split_dir is None:
            raise PreprocessError(
                f"{language.code}: no file given; write {language.code}=PATH, or give --split-dir DIR"
                f" holding DIR/{language.code}/train.txt (and valid.txt, test.txt, metadev.txt)"
            )
        return _split_files(split_dir / language.code, language.code)
    if path.is_dir():
        return _split_files(path, language.code)
    return {WHOLE_FILE_SOURCE: path}


def resolve_inputs(specs: Sequence[str], split_dir: Path | None = None) -> list[LanguageInput]:
    """Turn ``LANG=FILE``, ``LANG=DIR`` or (with ``split_dir``) ``LANG`` specs into checked inputs.

    ``LANG=FILE`` is one file to split; ``LANG=DIR`` and ``LANG`` with
    ``split_dir`` (meaning ``split_dir/LANG``) are the user's own splits, a
    directory with ``train.txt`` and any of ``valid.txt``, ``test.txt``,
    ``metadev.txt`` (missing held-out splits are carved from train).
    """
    if not specs:
        raise PreprocessError("no languages given; pass LANG=PATH arguments such as en=data/en.txt")
    parsed = [parse_input_spec(spec) for spec in specs]
    languages = parse_languages(code for code, _ in parsed)
    inputs = [
        LanguageInput(language, _sources(language, path, split_dir))
        for language, (_, path) in zip(languages, parsed)
    ]
    for language_input in inputs:
        for source, path in language_input.sources.items():
            check_input_file(path, f"{language_input.language.code} ({source})")
    return inputs
