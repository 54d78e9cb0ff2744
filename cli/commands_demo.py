"""``xlint demo``: the whole pipeline on real data, small enough for two CPU cores.

Koine Greek (SBLGNT), Turkish (Turkish Web Treebank) and English (BSB) text is
fetched from pinned PyPI wheels (:mod:`xlint.preprocess.demo_data`), preprocessed
with one joint subword model, and tiny models of Wang et al.'s Table 2 rows are
pretrained with fairseq-train. The POS dev and test sentences of every language
(and the English translations of the Greek ones) are held out of that
pretraining text.

Two tables come out:

* per-language validation perplexity (every model shares the vocabulary, so the
  numbers are comparable): Mono rows against the multilingual rows show negative
  interference, the adapter rows what language-specific capacity buys;
* POS tagging accuracy of every multilingual model fine-tuned on English (silver
  tags projected from the Greek gold tags) and tested on English, and zero-shot on
  Greek and Turkish (gold), next to within-language fine-tuning on Greek and
  Turkish and to the majority-tag baseline of every test set.

Independent fairseq-train jobs run side by side (``--jobs``, one thread each).
Every result is cached under a folder named after a hash of the options that
produce it, so a re-run reuses exactly the results whose options did not change.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import click

from ..preprocess.demo_data import (
    POS_LANGUAGES,
    SHARED_TAGS,
    SPLITS,
    DemoData,
    DemoDataError,
    fetch_demo_data,
    read_conll,
)
from ..preprocess.textio import sha256_file, write_json_atomic, write_text_atomic
from .commands_pretrain import pretrain_options
from .demo_jobs import (
    ONE_THREAD,
    Job,
    JobOutcome,
    finetune_job_command,
    finetune_job_payload,
    keyed_dir,
    options_key,
    read_cached_result,
    run_jobs,
    write_cached_result,
    write_finetune_job,
)
from .fairseq_logs import as_float, parse_log_records
from .fairseq_runner import fairseq_train_command, run_command

DEMO_LANGUAGES = ("grc", "tr", "en")
#: the fine-tuning language of the zero-shot columns, and the languages tested zero-shot
SOURCE_LANGUAGE = "en"
ZERO_SHOT_TARGETS = ("grc", "tr")
#: languages also fine-tuned and tested on themselves (upper bounds of the zero-shot columns)
WITHIN_LANGUAGES = ("grc", "tr")
#: model size (the ``tiny`` preset's, stated so that it is part of every key): d=128 fits English
#: better and transfers worse, d=32 fits English worse and transfers no better (README)
DEMO_MODEL: Dict[str, Any] = {"encoder_layers": 2, "encoder_embed_dim": 64, "encoder_ffn_embed_dim": 128,
                              "encoder_attention_heads": 4}
#: sentences per meta-dev batch of +meta adapt (one batch per language per update): with the
#: training batch size (32) its meta step makes it 12 times slower than Joint on one CPU thread
META_DEV_BATCH_SIZE = 8
#: preprocessing held-out sizes per language (the demo's Turkish text has 3,880 sentences)
HELD_OUT_SIZES = {"valid_size": 300, "test_size": 300, "metadev_size": 300}
FINETUNE_LR = 5e-4
FINETUNE_BATCH_SIZE = 32
#: the Joint run probes the gradient similarity between languages as it trains (Wang et al. Fig. 3;
#: training is bit-identical with and without the probes): every 50 updates, 64 sentences per probe
GRAD_SIM_RUN = "joint"
GRAD_SIM_OPTIONS: Dict[str, Any] = {"grad_sim_interval": 50, "grad_sim_sentences": 64}


@dataclass(frozen=True)
class DemoRun:
    name: str  # folder name
    row: str  # table row
    variant: str
    languages: Sequence[str]


DEMO_RUNS = (
    DemoRun("meta-adapter", "+meta adapt", "meta_adapter", DEMO_LANGUAGES),  # slowest first
    DemoRun("joint", "Joint (grc+tr+en)", "joint", DEMO_LANGUAGES),
    DemoRun("ffn", "+ffn", "ffn", DEMO_LANGUAGES),
    DemoRun("adapter", "+adapt", "adapter", DEMO_LANGUAGES),
    DemoRun("mono-grc", "Mono", "joint", ("grc",)),
    DemoRun("mono-tr", "Mono", "joint", ("tr",)),
)
#: the order of the table rows
TABLE_ORDER = ("mono-grc", "mono-tr", "joint", "ffn", "adapter", "meta-adapter")


@dataclass(frozen=True)
class FinetuneTask:
    """One fine-tuning of a pretrained model: train on ``source`` (and ``targets`` when bilingual), test on ``tests``.

    ``several_seeds``: run with every seed of ``--finetune-seeds`` (zero-shot scores vary
    a lot from seed to seed); otherwise with the first seed only.  ``setting`` is
    ``xlint finetune``'s (``within``: validate and select on ``source`` alone; ``zero-shot``:
    validate on ``targets`` too, select on ``source``; ``bilingual``: train on ``source`` and
    ``targets``, select on their mean).  ``method`` and ``method_options``: ``xlint finetune
    --method`` and its ``MethodOptions`` fields; ``fairseq_args``: more fairseq-train options
    (the training curves).  Only values other than the defaults enter the job's key, so the
    Wang part's keys stay those of the plain within-language runs.
    """

    source: str
    tests: Tuple[str, ...]
    several_seeds: bool
    setting: str = "within"
    targets: Tuple[str, ...] = ()
    method: str = "df"
    method_options: Tuple[Tuple[str, Any], ...] = ()
    fairseq_args: Tuple[str, ...] = ()
    #: the job folder's and name's prefix (default ``pos-<source>``)
    label: Optional[str] = None

    @property
    def name(self) -> str:
        return self.label or f"pos-{self.source}"

    def column(self, test: str) -> str:
        """The table column of the scores on ``test``."""
        if test != self.source:
            return f"{test} zero-shot"
        return f"{test} within (silver)" if test == SOURCE_LANGUAGE else f"{test} within"

    def method_payload(self) -> Dict[str, Any]:
        """The ``MethodOptions`` fields of this task (``{}`` for plain fine-tuning)."""
        return {"method": self.method, **dict(self.method_options)} if self.method != "df" or \
            self.method_options else {}

    def extra_options(self) -> Dict[str, Any]:
        """The options that differ from a plain within-language run (part of the job's key)."""
        extra: Dict[str, Any] = {}
        if self.setting != "within":
            extra.update(setting=self.setting, targets=list(self.targets))
        if self.method_payload():
            extra["method"] = self.method_payload()
        if self.fairseq_args:
            extra["fairseq_args"] = list(self.fairseq_args)
        return extra


FINETUNE_TASKS = (FinetuneTask(SOURCE_LANGUAGE, (SOURCE_LANGUAGE, *ZERO_SHOT_TARGETS), several_seeds=True),
                  *(FinetuneTask(lang, (lang,), several_seeds=False) for lang in WITHIN_LANGUAGES))
COLUMNS = tuple(task.column(test) for task in FINETUNE_TASKS for test in task.tests)


@dataclass(frozen=True)
class DemoSettings:
    """The options of one ``xlint demo`` run."""

    workdir: Path
    max_update: int
    english_sentences: int
    vocab_size: int
    finetune_epochs: int
    finetune_examples: int
    finetune_seeds: int
    jobs: int
    #: updates of each L0 mask-learning job (0: no L0 masks)
    l0_updates: int = 60

    def seeds(self, task: FinetuneTask) -> List[int]:
        """The fine-tuning seeds of ``task``: 1..--finetune-seeds, or just 1."""
        return list(range(1, self.finetune_seeds + 1)) if task.several_seeds else [1]


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Corpus:
    path: Path
    key: str


def preprocess_options(data: DemoData, settings: DemoSettings) -> Dict[str, Any]:
    """Everything the preprocessed corpus depends on: options and the sha256 of each input."""
    return {"vocab_size": settings.vocab_size, "subsample_en": settings.english_sentences, **HELD_OUT_SIZES,
            "inputs": {lang: sha256_file(data.pretrain[lang]) for lang in DEMO_LANGUAGES}}


def preprocess_command(data: DemoData, corpus: Path, settings: DemoSettings) -> List[str]:
    """``xlint preprocess`` on the pretraining text (POS dev/test sentences held out)."""
    command = [xlint_script(), "preprocess", "--out", str(corpus), "--vocab-size", str(settings.vocab_size),
               "--subsample", f"en={settings.english_sentences}", "--quiet"]
    for option, value in HELD_OUT_SIZES.items():
        command += ["--" + option.replace("_", "-"), str(value)]
    return command + [f"{lang}={data.pretrain[lang]}" for lang in DEMO_LANGUAGES]


def prepare_corpus(data: DemoData, settings: DemoSettings) -> Corpus:
    key = options_key(preprocess_options(data, settings))
    corpus = keyed_dir(settings.workdir, "corpus", key)
    if (corpus / "metadata.json").is_file():
        click.echo(f"reusing the preprocessed corpus {corpus}", err=True)
    else:
        click.echo(f"preprocessing into {corpus}", err=True)
        run_command(preprocess_command(data, corpus, settings), echo=False)
    return Corpus(corpus, key)


def xlint_script() -> str:
    candidate = Path(sys.executable).parent / "xlint"
    return str(candidate) if candidate.exists() else "xlint"


# --------------------------------------------------------------------------- pretraining


def last_validation(log_path: Path) -> Dict[str, float]:
    """The last ``valid`` record of a fairseq-train log written with ``--log-format json``."""
    records = parse_log_records(log_path.read_text(encoding="utf-8").splitlines(), "valid")
    if not records:
        raise click.ClickException(f"{log_path}: no validation record (did training run?)")
    return {key: value for key, value in ((k, as_float(v)) for k, v in records[-1].items()) if value is not None}


@dataclass(frozen=True)
class PretrainPlan:
    run: DemoRun
    run_dir: Path
    key: str
    options: Dict[str, Any]
    command: List[str]

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "checkpoint_last.pt"

    @property
    def grad_sim_file(self) -> Path:
        """Where the run's gradient-similarity probes write their rows (with ``GRAD_SIM_OPTIONS``)."""
        return self.run_dir / "checkpoints" / "grad_sim.jsonl"


def plan_pretraining(corpus: Corpus, run: DemoRun, settings: DemoSettings) -> PretrainPlan:
    """The fairseq-train command of one row and the key of its result (corpus + every option)."""
    options = pretrain_options("tiny", run.variant, run.languages, Path("checkpoints"), seed=1,
                               max_update=settings.max_update)
    options.update({"log_format": "json", "validate_interval_updates": settings.max_update,
                    "save_interval_updates": 0, **DEMO_MODEL})
    if run.variant == "meta_adapter":
        options["meta_dev_batch_size"] = META_DEV_BATCH_SIZE
    if run.name == GRAD_SIM_RUN:
        options.update(GRAD_SIM_OPTIONS)
    keyed = {"corpus": corpus.key, "fairseq": {k: v for k, v in options.items() if k != "save_dir"}}
    key = options_key(keyed)
    run_dir = keyed_dir(settings.workdir / "runs", run.name, key)
    options["save_dir"] = str(run_dir / "checkpoints")
    return PretrainPlan(run, run_dir, key, keyed, fairseq_train_command(corpus.path, options))


def pretrain(plan: PretrainPlan) -> Dict[str, float]:
    """One pretraining run (one thread); returns and caches its last validation record."""
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    log_file = plan.run_dir / "train.log"
    run_command(plan.command, log_file=log_file, echo=False, quiet=True, env=ONE_THREAD)
    result = last_validation(log_file)
    write_cached_result(plan.run_dir, plan.key, plan.options, result)
    return result


def perplexity_summary(run: DemoRun, result: Mapping[str, float]) -> str:
    parts = [f"{lang} {result[f'valid_ppl_{lang}']:.1f}" for lang in run.languages if f"valid_ppl_{lang}" in result]
    return "valid ppl " + ", ".join(parts)


def pretraining_job(plan: PretrainPlan) -> Job:
    return Job(name=f"pretrain:{plan.run.name}", label=f"pretrain {plan.run.row} ({','.join(plan.run.languages)})",
               run=lambda: pretrain(plan), summary=lambda result: perplexity_summary(plan.run, result),
               cached=lambda: read_cached_result(plan.run_dir, plan.key), log_file=plan.run_dir / "train.log",
               total_updates=plan.options.get("fairseq", {}).get("max_update"))


# --------------------------------------------------------------------------- POS data and fine-tuning


@dataclass(frozen=True)
class PosData:
    path: Path
    key: str


def plan_pos_data(data: DemoData, corpus: Corpus, settings: DemoSettings) -> PosData:
    files = {f"{lang}/{split}": sha256_file(data.pos[lang][split]) for lang in POS_LANGUAGES for split in SPLITS}
    key = options_key({"corpus": corpus.key, "pos": files})
    return PosData(keyed_dir(settings.workdir, "pos-data", key), key)


def convert_pos_data(data: DemoData, corpus: Corpus, pos: PosData) -> Dict[str, Any]:
    """Encode the demo's POS files with the corpus' normalisation, subwords and dictionary."""
    from ..preprocess.finetune_convert import InputSpec, convert, reader_for

    specs = [InputSpec(lang, split, data.pos[lang][split]) for lang in POS_LANGUAGES for split in SPLITS]
    convert(specs, reader=reader_for("conll", iob="off", tag_set=SHARED_TAGS), task="tagging", kind="pos",
            source_format="demo-pos", corpus=corpus.path, out=pos.path, labels=SHARED_TAGS, force=True)
    return {"path": str(pos.path)}


def pos_data_job(data: DemoData, corpus: Corpus, pos: PosData) -> Job:
    def cached() -> Optional[Dict[str, Any]]:
        return {"path": str(pos.path)} if (pos.path / "meta.json").is_file() else None

    return Job(name="pos-data", label="encode the POS data", run=lambda: convert_pos_data(data, corpus, pos),
               summary=lambda result: result["path"], cached=cached)


@dataclass(frozen=True)
class FinetunePlan:
    run: DemoRun
    task: FinetuneTask
    seed: int
    job_dir: Path
    key: str
    options: Dict[str, Any]
    payload: Dict[str, Any]


def plan_finetuning(pretrained: PretrainPlan, task: FinetuneTask, seed: int, corpus: Corpus, pos: PosData,
                    settings: DemoSettings) -> FinetunePlan:
    """One fine-tuning job of one pretrained model; its key covers the model, the data and every option."""
    options = {"pretrained": pretrained.key, "pos_data": pos.key, "source": task.source, "tests": list(task.tests),
               "epochs": settings.finetune_epochs, "lr": FINETUNE_LR, "batch_size": FINETUNE_BATCH_SIZE,
               "max_train_examples": settings.finetune_examples, "seed": seed, **task.extra_options()}
    key = options_key(options)
    job_dir = keyed_dir(settings.workdir / "downstream", f"{pretrained.run.name}-{task.name}-seed{seed}", key)
    payload = finetune_job_payload(data=pos.path, pretrained=pretrained.checkpoint, corpus=corpus.path,
                                   save_dir=job_dir / "finetune", source=task.source, test_languages=task.tests,
                                   epochs=settings.finetune_epochs, lr=FINETUNE_LR, batch_size=FINETUNE_BATCH_SIZE,
                                   max_train_examples=settings.finetune_examples, seed=seed, setting=task.setting,
                                   targets=task.targets, method=task.method_payload(),
                                   fairseq_args=task.fairseq_args)
    return FinetunePlan(pretrained.run, task, seed, job_dir, key, options, payload)


def finetune(plan: FinetunePlan) -> Dict[str, Any]:
    """Run one fine-tuning job as its own process (one thread); return its cached result."""
    plan.job_dir.mkdir(parents=True, exist_ok=True)
    write_finetune_job(plan.job_dir, plan.key, plan.options, plan.payload)
    run_command(finetune_job_command(plan.job_dir), log_file=plan.job_dir / "job.log", echo=False, quiet=True,
                env=ONE_THREAD)
    result = read_cached_result(plan.job_dir, plan.key)
    if result is None:
        raise click.ClickException(f"{plan.job_dir}: the fine-tuning job wrote no result (log: "
                                   f"{plan.job_dir / 'job.log'})")
    return result


def finetune_summary(task: FinetuneTask, result: Mapping[str, Any]) -> str:
    return "test acc " + ", ".join(f"{test} {result['test'][test]['acc']:.1f}" for test in task.tests)


def finetuning_job_name(plan: FinetunePlan) -> str:
    return f"{plan.task.name}-seed{plan.seed}:{plan.run.name}"


def finetuning_label(plan: FinetunePlan) -> str:
    """``POS en -> en,grc,tr with Joint (grc+tr+en), seed 1``; the setting and method of any other than the
    plain within-language run: ``POS en+tr -> en,tr (bilingual, df) with ...``."""
    task = plan.task
    trained = "+".join((task.source, *task.targets)) if task.setting == "bilingual" else task.source
    kind = f" ({task.setting}, {task.method})" if task.extra_options() else ""
    return f"POS {trained} -> {','.join(task.tests)}{kind} with {plan.run.row}, seed {plan.seed}"


def finetuning_job(plan: FinetunePlan) -> Job:
    return Job(name=finetuning_job_name(plan), label=finetuning_label(plan),
               run=lambda: finetune(plan), summary=lambda result: finetune_summary(plan.task, result),
               depends_on=("pos-data", f"pretrain:{plan.run.name}"),
               cached=lambda: read_cached_result(plan.job_dir, plan.key), log_file=plan.job_dir / "job.log")


def downstream_runs() -> List[DemoRun]:
    """The rows that are fine-tuned: every model that has the source and all the test languages."""
    needed = {SOURCE_LANGUAGE, *ZERO_SHOT_TARGETS, *WITHIN_LANGUAGES}
    return [run for run in DEMO_RUNS if needed <= set(run.languages)]


# --------------------------------------------------------------------------- baselines and tables


@dataclass(frozen=True)
class Baseline:
    tag: str
    accuracy: float


def tag_counts(path: Path) -> Counter:
    return Counter(tag for sentence in read_conll(path) for _, tag in sentence)


def majority_baselines(pos_paths: Mapping[str, Mapping[str, Path]], languages: Sequence[str]) -> Dict[str, Baseline]:
    """Per test language: its test set's most frequent tag and that tag's accuracy (percent)."""
    baselines = {}
    for lang in languages:
        counts = tag_counts(pos_paths[lang]["test"])
        tag, count = counts.most_common(1)[0]
        baselines[lang] = Baseline(tag, 100.0 * count / sum(counts.values()))
    return baselines


def source_majority_baselines(pos_paths: Mapping[str, Mapping[str, Path]], source: str,
                              languages: Sequence[str]) -> Dict[str, Baseline]:
    """Per test language: the accuracy of always answering the source training set's most frequent tag."""
    tag = tag_counts(pos_paths[source]["train"]).most_common(1)[0][0]
    baselines = {}
    for lang in languages:
        counts = tag_counts(pos_paths[lang]["test"])
        baselines[lang] = Baseline(tag, 100.0 * counts[tag] / sum(counts.values()))
    return baselines


def column_language(column: str) -> str:
    return column.split(" ", 1)[0]


def perplexity_table(results: Mapping[str, Mapping[str, float]], languages: Sequence[str]) -> str:
    """Markdown table: one row per model row name, one column per language (valid ppl)."""
    runs = {run.name: run for run in DEMO_RUNS}
    rows: Dict[str, Dict[str, float]] = {}
    for name in TABLE_ORDER:
        if name not in results:
            continue
        for lang in runs[name].languages:
            key = f"valid_ppl_{lang}"
            if key in results[name]:
                rows.setdefault(runs[name].row, {})[lang] = results[name][key]
    lines = ["| model | " + " | ".join(languages) + " |", "|---" * (len(languages) + 1) + "|"]
    for row, values in rows.items():
        cells = [f"{values[lang]:.2f}" if lang in values else "–" for lang in languages]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


Scores = Mapping[str, Mapping[str, Sequence[float]]]


def format_scores(values: Sequence[float]) -> str:
    """``mean`` of one seed, ``mean ± sample std`` of several."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def downstream_table(scores: Scores, baselines: Mapping[str, Baseline],
                     source_baselines: Mapping[str, Baseline]) -> str:
    """Markdown table of test accuracy per model and column (over seeds), the two majority baselines first."""
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for label, chosen in (("majority tag of the test set", baselines),
                          (f"always {source_baselines[SOURCE_LANGUAGE].tag} (majority of {SOURCE_LANGUAGE} train)",
                           source_baselines)):
        cells = [f"{chosen[column_language(c)].accuracy:.1f} ({chosen[column_language(c)].tag})" for c in COLUMNS]
        lines.append(f"| *{label}* | " + " | ".join(cells) + " |")
    for row, values in scores.items():
        cells = [format_scores(values[column]) if values.get(column) else "–" for column in COLUMNS]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def zero_shot_verdict(scores: Scores, baselines: Mapping[str, Baseline]) -> str:
    """One line per zero-shot column: how many models beat the test set's majority tag (mean over seeds)."""
    lines = []
    for target in ZERO_SHOT_TARGETS:
        column = f"{target} zero-shot"
        runs = [row[column] for row in scores.values() if row.get(column)]
        if not runs:
            continue
        means = [statistics.fmean(values) for values in runs]
        above = sum(mean > baselines[target].accuracy for mean in means)
        seeds = sum(len(values) for values in runs)
        seeds_above = sum(value > baselines[target].accuracy for values in runs for value in values)
        lines.append(f"{column}: {above} of {len(runs)} models beat the majority baseline "
                     f"({baselines[target].tag} {baselines[target].accuracy:.1f}) on average, "
                     f"{seeds_above} of {seeds} single runs; best run {max(max(v) for v in runs):.1f}")
    return "\n".join(lines)


def collect_scores(finetune_plans: Sequence[FinetunePlan],
                   outcomes: Mapping[str, JobOutcome]) -> Dict[str, Dict[str, List[float]]]:
    """Test accuracy per table row and column, one value per seed, rows in table order."""
    scores: Dict[str, Dict[str, List[float]]] = {}
    for plan in sorted(finetune_plans, key=lambda plan: (TABLE_ORDER.index(plan.run.name), plan.seed)):
        test = outcomes[finetuning_job_name(plan)].result["test"]
        row = scores.setdefault(plan.run.row, {})
        for lang in plan.task.tests:
            row.setdefault(plan.task.column(lang), []).append(test[lang]["acc"])
    return scores


def projection_line(manifest: Mapping[str, Any]) -> str:
    stats = manifest["projection"]
    return (f"English POS tags are silver: Greek gold tags projected through the manual alignments "
            f"({stats['aligned_english_words']:,} of {stats['english_words']:,} English words aligned, "
            f"{100 * stats['aligned_english_word_share']:.1f}%; {stats['verses_kept']:,} of {stats['verses']:,} "
            f"NT verses kept).")


# --------------------------------------------------------------------------- the command


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, len(DEMO_RUNS)))


@click.command("demo")
@click.option("--paper", "papers", multiple=True, metavar="wang2020|guo2023|wu2022",
              help="run only the jobs of these papers' parts (repeatable or a comma list; default: all three)")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-runs"),
              show_default=True, help="where data, checkpoints, logs and results go")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="demo data cache (default: $XLINT_DATA_DIR or ~/.cache/xlint/data)")
@click.option("--max-update", type=click.IntRange(min=1), default=400, show_default=True,
              help="updates per pretraining run")
@click.option("--english-sentences", type=click.IntRange(min=1), default=3000, show_default=True,
              help="English verses kept for pretraining (of 29,589; fewer transfer better to Greek here)")
@click.option("--vocab-size", type=click.IntRange(min=100), default=8000, show_default=True,
              help="joint subword vocabulary")
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=2, show_default=True,
              help="POS fine-tuning epochs of every fine-tuning (0 skips them: the Guo and Wu parts too)")
@click.option("--finetune-examples", type=click.IntRange(min=0), default=2000, show_default=True,
              help="training sentences per language of each POS fine-tuning run (0: all)")
@click.option("--finetune-seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="fine-tuning seeds of the English runs (zero-shot scores vary a lot with the seed)")
@click.option("--l0-updates", type=click.IntRange(min=0), default=60, show_default=True,
              help="updates of each L0 mask (Wang part; 0 skips the masks)")
@click.option("--jobs", type=click.IntRange(min=1), default=default_jobs, show_default="the number of CPU cores, "
              "at most 6", help="fairseq-train jobs run side by side, one thread each")
def demo(papers: Tuple[str, ...], workdir: Path, cache_dir: Optional[Path], max_update: int,
         english_sentences: int, vocab_size: int, finetune_epochs: int, finetune_examples: int,
         finetune_seeds: int, l0_updates: int, jobs: int) -> None:
    """Fetch real Greek/Turkish/English text, pretrain tiny models, fine-tune POS; tables and figures of
    Wang et al. 2020, Guo et al. 2023 and Wu et al. 2022.

    Re-running reuses the data, the corpus and every finished job whose options did not change.
    """
    from .demo_plan import parse_papers, plan_demo
    from .demo_report import build_report, closing_lines, draw_figures

    started = time.monotonic()
    chosen = parse_papers(papers)
    settings = DemoSettings(workdir, max_update, english_sentences, vocab_size, finetune_epochs, finetune_examples,
                            finetune_seeds, jobs, l0_updates)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        data = fetch_demo_data(cache_dir)
    except DemoDataError as err:
        raise click.ClickException(str(err)) from None
    corpus = prepare_corpus(data, settings)
    plan = plan_demo(chosen, data, corpus, settings)
    job_list = plan.jobs(data, corpus)
    click.echo(f"{', '.join(chosen)}: {len(job_list)} jobs, {jobs} at a time (one thread each); logs under "
               f"{workdir}", err=True)
    outcomes = run_jobs(job_list, jobs)
    figures, extra = draw_figures(plan, outcomes, workdir)
    report, results = build_report(data, plan, outcomes, extra)
    seconds = time.monotonic() - started
    results["seconds"] = round(seconds, 1)
    results["figures"] = [str(path) for path in figures]
    write_json_atomic(workdir / "results.json", results)
    write_text_atomic(workdir / "results.md", report + "\n")
    click.echo("\n" + report)
    click.echo("\n" + closing_lines(workdir, figures, seconds))
