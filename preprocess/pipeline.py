"""``xlint preprocess``: raw text per language in, fairseq-binarised data out.

Steps (each skipped on a re-run when its stamp matches, see :mod:`.stamps`):

1. normalise + tokenise every input file (:mod:`.normalize`)
2. dedupe and split each language, subsample train where asked (:mod:`.splits`)
3. sample the joint BPE training text with temperature T, learn one BPE model (:mod:`.bpe`)
4. apply it to every split, build one shared fairseq dictionary from all train text
5. binarise every split with fairseq's binarizer (:mod:`.binarize`)
6. write ``metadata.json`` (last: a directory with it is complete)

Output layout (read by the training task)::

    OUT/dict.txt                                    shared fairseq dictionary
    OUT/<lang>/{train,valid,test,metadev}.{bin,idx} mmap indexed datasets
    OUT/bpe/codes  or  OUT/bpe/spm.model + spm.vocab
    OUT/metadata.json
    OUT/work/                                       intermediate text, stamps, build.json
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from ..analysis.temperature import DEFAULT_TEMPERATURE
from .binarize import DATASET_IMPL, binarize_split, build_shared_dictionary
from .bpe import (
    BPE_KINDS, DEFAULT_BPE_SAMPLE_SENTENCES, DEFAULT_VOCAB_SIZE, SENTENCEPIECE, SPM_MODEL_TYPES, SUBWORD_NMT,
    BpeEncoder, bpe_model_files, bpe_sample_quotas, learn_bpe_model, sample_bpe_training_text,
)
from .errors import PreprocessError
from .inputs import LanguageInput
from .languages import Language
from .normalize import DEFAULT_UNICODE_FORM, NORMALIZER_VERSION, UNICODE_FORMS, TextNormalizer
from .parallel import TransformCounts, transform_lines_to_file, useful_workers
from .splits import HELDOUT_SPLITS, SPLITS, SplitOptions, split_language
from .stamps import StepStamps, hash_key
from .textio import read_json, read_own_lines, read_user_lines, sha256_file, write_json_atomic

logger = logging.getLogger(__name__)

#: Bumped when the output layout or the meaning of an option changes.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything ``xlint preprocess`` needs; see the CLI's ``--help`` for each option."""

    out_dir: Path
    inputs: Sequence[LanguageInput]
    valid_size: int | None = None
    test_size: int | None = None
    metadev_size: int | None = None
    dedupe: bool = True
    subsample: Mapping[str, int] = field(default_factory=dict)
    bpe: str = SUBWORD_NMT
    vocab_size: int = DEFAULT_VOCAB_SIZE
    bpe_sample_sentences: int = DEFAULT_BPE_SAMPLE_SENTENCES
    temperature: float = DEFAULT_TEMPERATURE
    seed: int = 1
    unicode_form: str = DEFAULT_UNICODE_FORM
    spm_model_type: str = "unigram"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    force: bool = False
    progress: bool = True

    @property
    def heldout_sizes(self) -> dict[str, int | None]:
        return {"valid": self.valid_size, "test": self.test_size, "metadev": self.metadev_size}

    @property
    def codes(self) -> list[str]:
        return [language_input.language.code for language_input in self.inputs]


def validate_config(config: PreprocessConfig) -> None:
    """Raise :class:`PreprocessError` for option values that cannot work."""
    checks = [
        (all(size is None or size >= 0 for size in config.heldout_sizes.values()),
         "--valid-size/--test-size/--metadev-size must not be negative"),
        (config.bpe in BPE_KINDS, f"--bpe must be one of {', '.join(BPE_KINDS)}"),
        (config.spm_model_type in SPM_MODEL_TYPES, f"--spm-model-type must be one of {', '.join(SPM_MODEL_TYPES)}"),
        (config.unicode_form in UNICODE_FORMS, f"--unicode-form must be one of {', '.join(UNICODE_FORMS)}"),
        (config.vocab_size >= 1, "--vocab-size must be positive"),
        (config.bpe_sample_sentences >= 1, "--bpe-sample-sentences must be positive"),
        (config.temperature > 0, "--temperature must be positive"),
        (config.seed >= 0, "--seed must not be negative"),
        (config.workers >= 1, "--workers must be positive"),
        (all(count >= 1 for count in config.subsample.values()), "--subsample sizes must be positive"),
    ]
    for passed, message in checks:
        if not passed:
            raise PreprocessError(message)
    unknown = sorted(set(config.subsample) - set(config.codes))
    if unknown:
        raise PreprocessError(
            f"--subsample names {', '.join(unknown)}, which is not among the languages {', '.join(config.codes)}"
        )


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class OutputLayout:
    """The paths of one output directory."""

    out_dir: Path

    @property
    def dict_path(self) -> Path:
        return self.out_dir / "dict.txt"

    @property
    def metadata_path(self) -> Path:
        return self.out_dir / "metadata.json"

    @property
    def bpe_dir(self) -> Path:
        return self.out_dir / "bpe"

    @property
    def work_dir(self) -> Path:
        return self.out_dir / "work"

    @property
    def build_path(self) -> Path:
        return self.work_dir / "build.json"

    @property
    def bpe_sample_path(self) -> Path:
        return self.work_dir / "bpe" / "sample.txt"

    def normalized_path(self, key: str) -> Path:
        """Normalised text is stored by content key, so ``fr`` and ``fr_l`` from one file share it."""
        return self.work_dir / "normalized" / f"{key[:20]}.tok"

    def text_dir(self, code: str) -> Path:
        return self.work_dir / code

    def text_path(self, code: str, split: str, stage: str) -> Path:
        """``stage`` is ``tok`` (normalised, split) or ``bpe`` (subword pieces)."""
        return self.text_dir(code) / f"{split}.{stage}"

    def dataset_prefix(self, code: str, split: str) -> Path:
        return self.out_dir / code / split

    def dataset_files(self, code: str, split: str) -> list[Path]:
        prefix = self.dataset_prefix(code, split)
        return [Path(f"{prefix}.bin"), Path(f"{prefix}.idx")]

    def bpe_files(self, kind: str) -> list[Path]:
        return [self.bpe_dir / name for name in bpe_model_files(kind)]

    def final_files(self, codes: Sequence[str], kind: str) -> list[Path]:
        """Every output the training task reads (metadata.json excepted)."""
        datasets = [path for code in codes for split in SPLITS for path in self.dataset_files(code, split)]
        return [self.dict_path, *self.bpe_files(kind), *datasets]


# --------------------------------------------------------------------------- build identity


def build_options(config: PreprocessConfig, input_hashes: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """The options that determine the output; a directory is only reused with equal options."""
    options: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "normalizer_version": NORMALIZER_VERSION,
        "languages": config.codes,
        "inputs": {code: dict(hashes) for code, hashes in input_hashes.items()},
        "heldout_sizes": config.heldout_sizes,
        "dedupe": config.dedupe,
        "subsample": dict(sorted(config.subsample.items())),
        "bpe": config.bpe,
        "vocab_size": config.vocab_size,
        "bpe_sample_sentences": config.bpe_sample_sentences,
        "temperature": config.temperature,
        "seed": config.seed,
        "unicode_form": config.unicode_form,
    }
    if config.bpe == SENTENCEPIECE:
        options["spm_model_type"] = config.spm_model_type
    return options


def _describe_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return "unset" if value is None else str(value)


def describe_option_changes(previous: Mapping[str, Any], current: Mapping[str, Any], limit: int = 4) -> str:
    """A short ``key old -> new`` list of the options that differ."""
    changes = []
    for key in sorted(set(previous) | set(current)):
        old, new = previous.get(key), current.get(key)
        if old == new or (key == "inputs" and previous.get("languages") != current.get("languages")):
            continue
        if key == "inputs":
            changed = sorted(code for code in new if old.get(code) != new[code])
            changes.append(f"input text of {','.join(changed)} changed")
        else:
            changes.append(f"{key} {_describe_value(old)} -> {_describe_value(new)}")
    shown = "; ".join(changes[:limit])
    return shown + (f"; and {len(changes) - limit} more" if len(changes) > limit else "")


def _recorded_options(path: Path) -> Mapping[str, Any] | None:
    return read_json(path).get("options") if path.is_file() else None


def _looks_preprocessed(layout: OutputLayout) -> bool:
    return any(path.exists() for path in (layout.dict_path, layout.metadata_path, layout.build_path, layout.bpe_dir))


def remove_previous_output(layout: OutputLayout, codes: Sequence[str]) -> None:
    """Delete what a preprocess run writes (only that) from the output directory."""
    for path in (layout.dict_path, layout.metadata_path):
        path.unlink(missing_ok=True)
    for directory in (layout.bpe_dir, layout.work_dir):
        shutil.rmtree(directory, ignore_errors=True)
    for code in codes:
        _remove_datasets(layout, code)


def _remove_datasets(layout: OutputLayout, code: str) -> None:
    for split in SPLITS:
        for path in layout.dataset_files(code, split):
            path.unlink(missing_ok=True)
    language_dir = layout.out_dir / code
    if language_dir.is_dir() and not any(language_dir.iterdir()):
        language_dir.rmdir()


def prepare_output_dir(layout: OutputLayout, options: Mapping[str, Any], force: bool) -> None:
    """Check the output directory against this run's options; with ``force`` empty it first.

    * a finished build (``metadata.json``) with other options: error;
    * an unfinished build with other options: continued (every step's stamp is
      keyed by its inputs, so nothing stale is reused), after removing the
      datasets of languages this run does not have;
    * a ``dict.txt`` or ``bpe/`` that no xlint run recorded: error.
    """
    finished = _recorded_options(layout.metadata_path)
    started = _recorded_options(layout.build_path)
    if force and _looks_preprocessed(layout):
        logger.info("--force: removing the previous output in %s", layout.out_dir)
        previous_codes = [code for recorded in (finished, started) if recorded for code in recorded["languages"]]
        remove_previous_output(layout, sorted(set(previous_codes) | set(options["languages"])))
        return
    if layout.metadata_path.exists():
        if finished == options:
            return
        reason = (f"other options ({describe_option_changes(finished, options)})" if finished is not None
                  else "a metadata.json that xlint did not write")
    elif started is not None:
        if started != options:
            logger.info("continuing an unfinished build made with other options (%s)",
                        describe_option_changes(started, options))
            for code in set(started["languages"]) - set(options["languages"]):
                _remove_datasets(layout, code)
        return
    elif _looks_preprocessed(layout):
        reason = "a dict.txt or bpe/ of unknown origin"
    else:
        return
    raise PreprocessError(
        f"output directory {layout.out_dir} holds data preprocessed with {reason};"
        " use a fresh --out directory, or --force to rebuild it"
    )


# --------------------------------------------------------------------------- the run


def _hash_inputs(inputs: Sequence[LanguageInput]) -> dict[str, dict[str, str]]:
    return {
        item.language.code: {source: sha256_file(path) for source, path in sorted(item.sources.items())}
        for item in inputs
    }


class StepOutcome(NamedTuple):
    """A finished step: its key (which later steps fold into theirs) and its recorded result."""

    key: str
    result: dict


class _PreprocessRun:
    """One run of the pipeline; each step method returns a :class:`StepOutcome`."""

    def __init__(self, config: PreprocessConfig, options: dict[str, Any]) -> None:
        self.config = config
        self.options = options
        self.layout = OutputLayout(config.out_dir)
        self.stamps = StepStamps(self.layout.work_dir / "stamps")

    def _run_step(self, step: str, label: str, key: str, outputs: Sequence[Path],
                  work: Callable[[], dict | None]) -> StepOutcome:
        """Reuse the stamped result of ``step`` if it finished with ``key``, else run ``work()`` and stamp it."""
        result = self.stamps.finished_result(step, key, outputs)
        if result is not None:
            logger.info("%s: done before, skipped", label)
            return StepOutcome(key, result)
        logger.info("%s", label)
        result = work() or {}
        self.stamps.mark_finished(step, key, result)
        return StepOutcome(key, result)

    def _transform(self, lines: Iterable[str], function: Callable[[str], str], source: Path, destination: Path,
                   description: str) -> TransformCounts:
        return transform_lines_to_file(
            lines, function, destination, workers=useful_workers(source, self.config.workers),
            progress=self.config.progress, description=description,
        )

    def normalize_source(self, item: LanguageInput, source: str) -> StepOutcome:
        """Normalise one input file into ``work/normalized/<key>.tok`` (shared by inputs with equal keys)."""
        language, path = item.language, item.sources[source]
        key = hash_key("normalize", NORMALIZER_VERSION, self.options["inputs"][language.code][source],
                       language.moses_code, self.config.unicode_form)
        destination = self.layout.normalized_path(key)

        def work() -> dict:
            normalizer = TextNormalizer(language.moses_code, self.config.unicode_form)
            counts = self._transform(read_user_lines(path), normalizer, path, destination,
                                     f"normalise {language.code} {source}")
            if counts.lines_out == 0:
                destination.unlink()
                raise PreprocessError(f"{language.code}: {path} has no text (only blank lines after normalisation)")
            return {"input_lines": counts.lines_in, "empty_lines_dropped": counts.lines_in - counts.lines_out}

        label = f"normalise {language.code} ({source})"
        return self._run_step(f"normalize-{key[:20]}", label, key, [destination], work)

    def split(self, item: LanguageInput) -> StepOutcome:
        """Dedupe, split and subsample one language into ``work/<lang>/<split>.tok``."""
        code = item.language.code
        normalized = {source: self.normalize_source(item, source) for source in sorted(item.sources)}
        options = SplitOptions(
            heldout_sizes=self.config.heldout_sizes, dedupe=self.config.dedupe, seed=self.config.seed,
            split_seed_key=item.language.base, subsample=self.config.subsample.get(code), subsample_seed_key=code,
        )
        key = hash_key("split", {source: outcome.key for source, outcome in normalized.items()}, asdict(options))
        outputs = [self.layout.text_path(code, split, "tok") for split in SPLITS]

        def work() -> dict:
            sources = {source: self.layout.normalized_path(outcome.key) for source, outcome in normalized.items()}
            result = split_language(sources, self.layout.text_dir(code), options, code)
            return {**result, "sources": {source: outcome.result for source, outcome in normalized.items()}}

        return self._run_step(f"split-{code}", f"split {code}", key, outputs, work)

    def sample_bpe_text(self, splits: Mapping[str, StepOutcome]) -> StepOutcome:
        """Write the temperature-sampled mix of the train splits that the subword model learns from."""
        config = self.config
        key = hash_key("bpe-sample", {code: outcome.key for code, outcome in splits.items()},
                       config.temperature, config.bpe_sample_sentences, config.seed)
        train_sentences = {code: outcome.result["sentences"]["train"] for code, outcome in splits.items()}

        def work() -> dict:
            quotas = bpe_sample_quotas(train_sentences, config.bpe_sample_sentences, config.temperature)
            train_files = {code: self.layout.text_path(code, "train", "tok") for code in config.codes}
            sample_bpe_training_text(train_files, quotas, train_sentences, self.layout.bpe_sample_path, config.seed)
            return {"per_language": quotas}

        label = "sample the subword training text"
        return self._run_step("bpe-sample", label, key, [self.layout.bpe_sample_path], work)

    def learn_bpe(self, sample: StepOutcome) -> StepOutcome:
        """Learn the joint subword model into ``OUT/bpe/``."""
        config = self.config
        key = hash_key("bpe-learn", sample.key, config.bpe, config.vocab_size, self.options.get("spm_model_type"))
        model_files = self.layout.bpe_files(config.bpe)

        def work() -> dict:
            learn_bpe_model(config.bpe, self.layout.bpe_sample_path, self.layout.bpe_dir, config.vocab_size,
                            workers=config.workers, seed=config.seed, spm_model_type=config.spm_model_type,
                            progress=config.progress)
            return {"sha256": sha256_file(model_files[0])}

        return self._run_step("bpe-learn", f"learn the {config.bpe} model", key, model_files, work)

    def apply_bpe(self, code: str, split: StepOutcome, bpe: StepOutcome) -> StepOutcome:
        """Encode every split of one language into ``work/<lang>/<split>.bpe``."""
        key = hash_key("bpe-apply", split.key, bpe.key)
        encoder = BpeEncoder(self.config.bpe, self.layout.bpe_dir)

        def work() -> None:
            for part in SPLITS:
                tokenized = self.layout.text_path(code, part, "tok")
                self._transform(read_own_lines(tokenized), encoder, tokenized,
                                self.layout.text_path(code, part, "bpe"), f"bpe {code} {part}")

        outputs = [self.layout.text_path(code, part, "bpe") for part in SPLITS]
        return self._run_step(f"bpe-apply-{code}", f"apply the subword model to {code}", key, outputs, work)

    def build_dictionary(self, applied: Mapping[str, StepOutcome]) -> StepOutcome:
        """Build ``OUT/dict.txt`` from the encoded train splits of all languages."""
        key = hash_key("dictionary", {code: outcome.key for code, outcome in applied.items()})

        def work() -> dict:
            train_files = [self.layout.text_path(code, "train", "bpe") for code in self.config.codes]
            size = build_shared_dictionary(train_files, self.layout.dict_path)
            return {"size": size, "sha256": sha256_file(self.layout.dict_path)}

        return self._run_step("dictionary", "build the shared dictionary", key, [self.layout.dict_path], work)

    def binarize(self, code: str, applied: StepOutcome, dictionary: StepOutcome) -> StepOutcome:
        """Binarise every split of one language into ``OUT/<lang>/<split>.{bin,idx}``."""
        key = hash_key("binarize", applied.key, dictionary.key, DATASET_IMPL)
        outputs = [path for part in SPLITS for path in self.layout.dataset_files(code, part)]

        def work() -> dict:
            (self.layout.out_dir / code).mkdir(parents=True, exist_ok=True)
            return {
                part: binarize_split(self.layout.text_path(code, part, "bpe"), self.layout.dict_path,
                                     self.layout.dataset_prefix(code, part), workers=self.config.workers)
                for part in SPLITS
            }

        return self._run_step(f"binarize-{code}", f"binarise {code}", key, outputs, work)

    def run(self) -> dict:
        """Run every step, write ``metadata.json`` last and return it."""
        write_json_atomic(self.layout.build_path, {"options": self.options})
        codes = self.config.codes
        splits = {item.language.code: self.split(item) for item in self.config.inputs}
        sample = self.sample_bpe_text(splits)
        bpe = self.learn_bpe(sample)
        applied = {code: self.apply_bpe(code, splits[code], bpe) for code in codes}
        dictionary = self.build_dictionary(applied)
        datasets = {code: self.binarize(code, applied[code], dictionary).result for code in codes}
        metadata = self.metadata({code: outcome.result for code, outcome in splits.items()},
                                 sample.result, bpe.result, dictionary.result, datasets)
        write_json_atomic(self.layout.metadata_path, metadata)
        return metadata

    def metadata(self, splits: Mapping[str, dict], sample: Mapping[str, Any], bpe: Mapping[str, Any],
                 dictionary: Mapping[str, Any], datasets: Mapping[str, dict]) -> dict:
        """The content of ``metadata.json`` (see the module docstring)."""
        config = self.config
        bpe_summary = {
            "kind": config.bpe, "vocab_size": config.vocab_size, "sha256": bpe["sha256"],
            "files": [path.name for path in self.layout.bpe_files(config.bpe)],
            "sample": {"temperature": config.temperature, "max_sentences": config.bpe_sample_sentences, **sample},
        }
        if config.bpe == SENTENCEPIECE:
            bpe_summary["spm_model_type"] = config.spm_model_type
        return {
            "format_version": FORMAT_VERSION,
            "languages": config.codes,
            "language_info": {item.language.code: _language_info(item.language) for item in config.inputs},
            "bpe": bpe_summary,
            "dict_sha256": dictionary["sha256"],
            "dict_size": dictionary["size"],
            "dataset_impl": DATASET_IMPL,
            "splits": datasets,
            "filtering": {
                code: {"sources": result["sources"], "duplicates_removed": result["duplicates_removed"],
                       "train_before_subsample": result["train_before_subsample"]}
                for code, result in splits.items()
            },
            "inputs": {item.language.code: self._input_description(item) for item in config.inputs},
            "normalization": {"unicode_form": config.unicode_form, "moses": True, "version": NORMALIZER_VERSION},
            "dedupe": config.dedupe,
            "subsample": dict(config.subsample),
            "temperature": config.temperature,
            "seed": config.seed,
            "options": self.options,
            "build_key": hash_key(self.options),
        }

    def _input_description(self, item: LanguageInput) -> dict[str, dict[str, str]]:
        hashes = self.options["inputs"][item.language.code]
        return {source: {"path": str(path.resolve()), "sha256": hashes[source]}
                for source, path in sorted(item.sources.items())}


def _language_info(language: Language) -> dict[str, str]:
    return {"base": language.base, "iso639_3": language.iso639_3, "name": language.name,
            "moses": language.moses_code}


def _complete_metadata(layout: OutputLayout, options: Mapping[str, Any]) -> dict | None:
    """The metadata of a finished build with these options whose outputs all exist, else None."""
    if not layout.metadata_path.is_file():
        return None
    metadata = read_json(layout.metadata_path)
    if metadata.get("options") != options:
        return None
    if not all(path.exists() for path in layout.final_files(metadata["languages"], metadata["bpe"]["kind"])):
        return None
    return metadata


def run_preprocess(config: PreprocessConfig) -> dict:
    """Run (or finish, or skip) the whole pipeline for ``config``; return the metadata written.

    Raises :class:`PreprocessError` for anything the user can fix.
    """
    validate_config(config)
    options = build_options(config, _hash_inputs(config.inputs))
    layout = OutputLayout(config.out_dir)
    prepare_output_dir(layout, options, config.force)
    metadata = _complete_metadata(layout, options)
    if metadata is not None:
        logger.info("%s is up to date", config.out_dir)
        return metadata
    return _PreprocessRun(config, options).run()


__all__ = [
    "PreprocessConfig", "OutputLayout", "run_preprocess", "validate_config", "build_options",
    "describe_option_changes", "prepare_output_dir", "remove_previous_output", "HELDOUT_SPLITS", "SPLITS",
]
