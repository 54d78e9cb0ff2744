"""The papers' tables from finished ``xlint finetune`` runs: one parameterised builder over table specs.

A :class:`TableSpec` says, as data, which run every cell of a paper table reads:

* ``sections`` (the paper's row blocks, e.g. *Within-language* / *Zero-shot*) hold ``rows``;
  ``column_groups`` (e.g. *NER (F1)*, *POS (F1)*) hold ``columns``. Every section, row, group
  and column carries template variables (``vars``).
* A cell's variables are merged, later winning: the spec's ``defaults`` < column group <
  column < section < row, plus ``row``, ``col``, ``section`` and ``group`` (the keys).
  Three of them are templates formatted with the merged variables:

  - ``path``: the ``results.json`` below a RUN_DIR, e.g. ``{col}/{row}/{task}-{setting}/results.json``;
  - ``score``: the group of ``results.json``'s test summary: a language, ``avg`` or ``tgt_avg``;
  - ``metric``: the metric(s), ``/``-separated (``f1/em`` prints as the paper's F1/EM cells).

* A column whose variables hold ``average`` (space-separated column keys of its group) is the
  mean of those cells of its row (the paper's *avg*): per seed when every cell has the same
  seeds (mean ± std over the per-seed averages), else the mean of the means.
* A row with ``ours=False`` (XLM-100) is the paper's only: no run is expected for it.
* ``absent`` lists (row id, column id) cells the paper leaves empty (printed ``-``).

Cell values come from ``results.json`` as ``xlint finetune`` writes it:
``test.per_seed[seed].scores[lang][metric]`` (``average`` / ``target_average`` for ``avg`` /
``tgt_avg``), aggregated here as mean ± sample std over seeds.  A missing or unfinished run is an
empty cell and an entry of :attr:`Table.missing`, never an error.

The published numbers are package data (``published/<paper>.json``), transcribed once from
the paper's text, keyed by the same row and column ids (``section/row``, ``group/col``).
Adding a table (or the Guo et al. runs) is a new :class:`TableSpec` in :data:`SPECS`.
"""
from __future__ import annotations

import csv
import io
import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

PUBLISHED_DIR = Path(__file__).resolve().parent / "published"
#: how a table's title names its paper
PAPER_NAMES = {"wang2020": "Wang et al. (2020)", "guo2023": "Guo et al. (2023)"}


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class Axis:
    """One row or column: ``key`` (its id and default directory/language name), the label printed."""

    key: str
    label: str
    vars: Mapping[str, str] = field(default_factory=dict)
    ours: bool = True
    #: the label as the paper's text prints it, where it differs (a typo such as "NosiyTune")
    printed: Optional[str] = None


@dataclass(frozen=True)
class Group:
    """A block of rows (a section) or of columns (a column group)."""

    key: str
    label: str
    items: Tuple[Axis, ...]
    vars: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TableSpec:
    paper: str
    table: str
    title: str
    defaults: Mapping[str, str]
    column_groups: Tuple[Group, ...]
    sections: Tuple[Group, ...]
    absent: FrozenSet[Tuple[str, str]] = frozenset()
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.paper}_table{self.table}"

    def columns(self) -> List[Tuple[Group, Axis]]:
        return [(group, column) for group in self.column_groups for column in group.items]

    def rows(self) -> List[Tuple[Group, Axis]]:
        return [(section, row) for section in self.sections for row in section.items]


def column_id(group: Group, column: Axis) -> str:
    return f"{group.key}/{column.key}"


def row_id(section: Group, row: Axis) -> str:
    return f"{section.key}/{row.key}"


def cell_vars(spec: TableSpec, section: Group, row: Axis, group: Group, column: Axis) -> Dict[str, str]:
    merged: Dict[str, str] = dict(spec.defaults)
    merged.update(row=row.key, col=column.key, section=section.key, group=group.key)
    for layer in (group.vars, column.vars, section.vars, row.vars):
        merged.update(layer)
    return merged


def _expand(template: str, values: Mapping[str, str], spec: TableSpec) -> str:
    try:
        return template.format(**values)
    except KeyError as error:
        raise ValueError(f"{spec.name}: template {template!r} uses {error} that no row or column sets") from None


@dataclass(frozen=True)
class CellSource:
    """Where a cell's numbers are: ``path`` below a RUN_DIR, the summary ``score`` group, ``metrics``."""

    path: str
    score: str
    metrics: Tuple[str, ...]


def cell_source(spec: TableSpec, section: Group, row: Axis, group: Group, column: Axis) -> Optional[CellSource]:
    """The run a cell reads, or None for the paper's own rows, absent cells and average columns."""
    if not row.ours or (row_id(section, row), column_id(group, column)) in spec.absent:
        return None
    values = cell_vars(spec, section, row, group, column)
    if "average" in values:
        return None
    return CellSource(path=_expand(values["path"], values, spec), score=_expand(values["score"], values, spec),
                      metrics=tuple(_expand(values["metric"], values, spec).split("/")))


def _axes(keys: str, **vars: str) -> Tuple[Axis, ...]:
    return tuple(Axis(key, key, dict(vars)) for key in keys.split())


def _low_resource_axes(keys: str) -> Tuple[Axis, ...]:
    """Columns LANG and LANG_l (Table 5): a LANG_l model is tested on LANG's test set, so both read LANG's score."""
    return tuple(Axis(key, key, {"lang": key[:-2] if key.endswith("_l") else key}) for key in keys.split())


def _with_avg(keys: str) -> Tuple[Axis, ...]:
    return _axes(keys) + (Axis("avg", "avg", {"average": keys}),)


# Wang et al. (2020): one pretrained pair (LANG + en) per language, so the language is the first directory
WANG_LAYOUT = "{col}/{row}/{task}-{setting}/results.json"
WANG_ROWS = (("mono", "Mono", None), ("jointpair", "JointPair", None), ("ffn", "+ ffn", None),
             ("attn", "+ attn", None), ("adapt", "+ adapt", None), ("share-adapt", "+ share adapt", None),
             ("meta-adapt", "+ meta adapt", None))
XLM_ROW = Axis("xlm", "XLM", ours=False)


def _wang_rows(keys: Sequence[str], printed: Mapping[str, str] = {}) -> Tuple[Axis, ...]:
    rows = []
    for key, label, _ in WANG_ROWS:
        if key in keys:
            rows.append(Axis(key, label, printed=printed.get(key)))
    if "xlm" in keys:
        rows.append(XLM_ROW)
    return tuple(rows)


_ALL = ("mono", "jointpair", "ffn", "attn", "adapt", "share-adapt", "meta-adapt", "xlm")
_ADPT = {"adapt": "+ adpt", "share-adapt": "+ share adpt", "meta-adapt": "+ meta adpt"}


def _wang_sections(within: Sequence[str], zero: Sequence[str], printed: Mapping[str, str] = {}) -> Tuple[Group, ...]:
    return (Group("within", "Within-language Monolingual", _wang_rows(within, printed), {"setting": "within"}),
            Group("zero-shot", "Zero-shot Cross-lingual", _wang_rows(zero, printed), {"setting": "zero-shot"}))


def _wang(table: str, title: str, groups: Tuple[Group, ...], sections: Tuple[Group, ...], note: str = "",
          score: str = "{col}") -> TableSpec:
    return TableSpec("wang2020", table, title, {"path": WANG_LAYOUT, "score": score, "metric": "{metric}"},
                     groups, sections, note=note)


# Guo et al. (2023): one pretrained model (XLM-R); the method (a `xlint finetune --method` run) is a directory
GUO_LAYOUT = "{method}/{task}-{setting}/results.json"
GUO_DATASETS = (Axis("xnli", "XNLI", {"task": "xnli", "metric": "acc"}),
                Axis("mlqa", "MLQA", {"task": "mlqa", "metric": "f1"}),
                Axis("ner", "NER", {"task": "ner", "metric": "f1"}))
GUO_METHODS = (("df", "DF"), ("noisytune", "NoisyTune"), ("fs", "FS"), ("ff", "FF"), ("ours", "Our method"))


def _guo(table: str, title: str, groups: Tuple[Group, ...], sections: Tuple[Group, ...],
         absent: FrozenSet[Tuple[str, str]] = frozenset(), note: str = "") -> TableSpec:
    return TableSpec("guo2023", table, title,
                     {"path": GUO_LAYOUT, "score": "tgt_avg", "metric": "{metric}", "setting": "zero-shot"},
                     groups, sections, absent=absent, note=note)


def _methods(pairs: Sequence[Tuple[str, str]], **printed: str) -> Tuple[Axis, ...]:
    return tuple(Axis(key, label, {"method": key}, printed=printed.get(key)) for key, label in pairs)


def _datasets(order: str) -> Tuple[Axis, ...]:
    by_key = {axis.key: axis for axis in GUO_DATASETS}
    return tuple(by_key[key] for key in order.split())


SPECS: Dict[Tuple[str, str], TableSpec] = {}


def _register(spec: TableSpec) -> None:
    SPECS[(spec.paper, spec.table)] = spec


_register(_wang(
    "2", "NER and POS results (F1)",
    (Group("ner", "NER (F1)", _with_avg("ar fr ru hi sw te"), {"task": "ner", "metric": "f1"}),
     Group("pos", "POS (F1)", _with_avg("ar fr ru hi te"), {"task": "pos", "metric": "f1"})),
    _wang_sections(_ALL, _ALL[1:])))
_register(_wang(
    "3", "TyDiQA-GoldP results (F1)",
    (Group("qa", "TyDiQA-GoldP (F1)", _with_avg("ar ru sw te"), {"task": "tydiqa", "metric": "f1"}),),
    _wang_sections(_ALL, _ALL[1:], _ADPT)))
_register(_wang(
    "4", "JointTri against JointPair",
    (Group("ner", "NER (F1)", _axes("hi te"), {"task": "ner", "metric": "f1"}),
     Group("pos", "POS (F1)", _axes("hi te"), {"task": "pos", "metric": "f1"})),
    tuple(Group(section.key, section.label, (Axis("jointpair", "JointPair"), Axis("jointtri", "JointTri")),
                section.vars) for section in _wang_sections((), ()))))
_register(_wang(
    "5", "Training corpus size: fr/ru against their 100k-sentence versions fr_l/ru_l",
    (Group("ner", "NER (F1)", _low_resource_axes("fr fr_l ru ru_l"), {"task": "ner", "metric": "f1"}),
     Group("pos", "POS (F1)", _low_resource_axes("fr fr_l ru ru_l"), {"task": "pos", "metric": "f1"}),
     Group("qa", "QA (F1/EM)", _low_resource_axes("ru ru_l"), {"task": "tydiqa", "metric": "f1/em"})),
    (Group("lang", "Within-language Performance on fr/ru",
           (Axis("mono", "Mono"), Axis("jointpair", "JointPair")), {"setting": "within"}),
     Group("en", "Within-language Performance on en", (Axis("jointpair", "JointPair"),),
           {"setting": "zero-shot", "score": "en"})),
    score="{lang}",
    note="A LANG_l column's runs are in LANG_l/ and score LANG's test set (the same data; a model pretrained "
         "on 100k LANG sentences). The en row is the English test score of the zero-shot runs (fine-tuned and "
         "selected on en) of the JointPair model paired with each column's language. The paper text prints the "
         "section heading 'on en' above the second row; its numbers are Table 2's within-language JointPair "
         "numbers, so it belongs to 'on fr/ru'."))
_register(_wang(
    "6", "XNLI results (accuracy)",
    (Group("xnli", "XNLI (acc)", _with_avg("ar fr ru hi sw"), {"task": "xnli", "metric": "acc"}),),
    (Group("zero-shot", "Zero-shot Cross-lingual", _wang_rows(_ALL[1:], {"ffn": "+ ffnn"}),
           {"setting": "zero-shot"}),)))
_register(_wang(
    "7", "Full TyDiQA-GoldP results (F1/EM)",
    (Group("qa", "TyDiQA-GoldP (F1/EM)", _with_avg("ar ru sw te"), {"task": "tydiqa", "metric": "f1/em"}),),
    _wang_sections(_ALL, _ALL[1:], _ADPT)))

_register(_guo(
    "1", "Zero-shot: fine-tuning only the last layers, freezing the first four, enlarging the last two's lr",
    (Group("method", "", _methods((("df", "Baseline"), ("last-1", "Last one"), ("last-2", "Last two"),
                                   ("last-3", "Last three"), ("freeze-4", "Freeze four"),
                                   ("freeze-4-attn", "Freeze attention"), ("freeze-4-ffn", "Freeze feed-forward"),
                                   ("enlarge-2", "Enlarge two"), ("enlarge-2-attn", "Enlarge attention"),
                                   ("enlarge-2-ffn", "Enlarge feed-forward")))),),
    (Group("dataset", "Dataset", _datasets("xnli mlqa ner")),)))
_register(_guo(
    "2", "Zero-shot (M = 0) and few-shot (M examples per target language)",
    tuple(Group(dataset.key, dataset.label,
                tuple(Axis(m, m, {"setting": "zero-shot" if m == "0" else f"few-shot-{m}"}) for m in ("0", "5", "10",
                                                                                                     "20")),
                dataset.vars) for dataset in _datasets("xnli ner mlqa")),
    (Group("method", "Method", _methods(GUO_METHODS)),)))
_register(_guo(
    "4", "Source and non-source languages (zero-shot)",
    tuple(Group(key, label, (Axis("source", "source", {"score": "en"}), Axis("non-source", "non-source")),
                {"method": key}) for key, label in (("df", "Baseline"), ("ours", "Our method"))),
    (Group("dataset", "Dataset", _datasets("xnli ner mlqa")),),
    note="The paper prints our method's gain over the baseline in parentheses; the report shows the published "
         "text as printed."))
_register(_guo(
    "5", "Hyper-parameters c1, c2 and r (zero-shot)",
    tuple(Group(name, label, tuple(Axis(value, value, {"method": f"{name}-{value}"}) for value in values.split()))
          for name, label, values in (("c1", "c_1", "0.5 0.1 0.01 0.001 0"), ("c2", "c_2", "5 10 15 20 100"),
                                      ("r", "r", "1 2 3 4"))),
    (Group("dataset", "Dataset", _datasets("xnli ner mlqa")),),
    absent=frozenset(("dataset/ner", f"c2/{value}") for value in "5 10 15 20 100".split()),
    note="Policy IV (c2) is not applied to NER, so the paper has no NER c2 cells."))
_register(_guo(
    "6", "Re-initialising the first four layers (zero-shot)",
    (Group("method", "", _methods((("df", "Baseline"), ("reinit-4", "Re-initialize four"),
                                   ("reinit-4-attn", "Re-initialize attention"),
                                   ("reinit-4-ffn", "Re-initialize feed-forward")))),),
    (Group("dataset", "Dataset", _datasets("xnli mlqa ner")),)))
_register(_guo(
    "7", "XNLI accuracy per language (zero-shot)",
    (Group("xnli", "XNLI (acc)", _axes("ar bg de el en es fr hi ru sw th tr ur vi zh"),
           {"task": "xnli", "metric": "acc", "score": "{col}"}),),
    (Group("method", "Method", _methods(GUO_METHODS, noisytune="NosiyTune")),)))
_register(_guo(
    "pos", "POS accuracy per language (zero-shot; beyond the paper: the demo's en -> tr, grc)",
    (Group("pos", "POS (acc)", _axes("en tr grc") + (Axis("tgt", "target avg", {"average": "tr grc"}),),
           {"task": "pos", "metric": "acc", "score": "{col}"}),),
    (Group("method", "Method", _methods(GUO_METHODS)),),
    note="Not a table of the paper: Guo et al.'s methods on the demo's real data (recipes/guo2023_demo_pos.sh)."))
_register(_guo(
    "8", "Which weight sets take which policy (zero-shot)",
    (Group("method", "", _methods((("ours", "Our method"), ("only-s1", "Only S^I"), ("only-s2", "Only S^II"),
                                   ("s2-to-s1", "S^II to S^I"), ("only-v1", "Only V^I"), ("only-v2", "Only V^II"),
                                   ("v2-to-v1", "V^II to V^I")))),),
    (Group("dataset", "Dataset", _datasets("xnli mlqa ner")),),
    absent=frozenset({("dataset/ner", "method/v2-to-v1")}),
    note="Policy IV is not applied to NER, so the paper has no NER 'V^II to V^I' cell."))


def get_spec(paper: str, table: str) -> TableSpec:
    try:
        return SPECS[(paper, str(table))]
    except KeyError:
        tables = ", ".join(t for p, t in SPECS if p == paper) or "none"
        raise KeyError(f"no table {table!r} for {paper} (tables: {tables})") from None


def layout_lines(spec: TableSpec) -> List[str]:
    """One line per results.json the table reads (below a RUN_DIR), with the cells it fills."""
    uses: Dict[str, List[str]] = {}
    for section, row in spec.rows():
        for group, column in spec.columns():
            source = cell_source(spec, section, row, group, column)
            if source is not None:
                uses.setdefault(source.path, []).append(
                    f"{row.label} ({section.label}) {group.label} {column.label}: {source.score} "
                    f"{'/'.join(source.metrics)}".replace("  ", " "))
    return [f"{path}  <- {'; '.join(cells)}" for path, cells in uses.items()]


# --------------------------------------------------------------------------- published numbers


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def normalise_printed(text: str) -> str:
    """A printed cell without spacing differences: ``74.7 \\pm 0.2`` and ``74.7±0.2`` both give ``74.7±0.2``."""
    text = text.replace("\\pm", "±")
    text = re.sub(r"\s+", "", text)
    return "" if text == "-" else text


def printed_numbers(text: str) -> List[float]:
    """The numbers of a printed cell (``63.1/49.2`` -> [63.1, 49.2]; ``74.7 ± 0.2`` -> [74.7, 0.2])."""
    return [float(number) for number in _NUMBER.findall(normalise_printed(text))]


def load_published(paper: str) -> Dict[str, Any]:
    path = PUBLISHED_DIR / f"{paper}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def published_cells(spec: TableSpec) -> Dict[Tuple[str, str], str]:
    """{(row id, column id): the paper's printed cell} for one table."""
    table = load_published(spec.paper)["tables"].get(spec.table)
    if table is None:
        return {}
    cells: Dict[Tuple[str, str], str] = {}
    for row in table["rows"]:
        for column, text in row["cells"].items():
            cells[(row["row"], column)] = text
    return cells


# --------------------------------------------------------------------------- reading runs


@dataclass
class Stat:
    mean: float
    std: Optional[float]
    n: int


@dataclass
class Cell:
    row: str
    column: str
    stats: List[Optional[Stat]] = field(default_factory=list)  # one per metric, None where missing
    source: Optional[str] = None       # the results.json read (its path as found)
    key: Optional[int] = None          # its footnote number
    seeds: List[str] = field(default_factory=list)
    per_seed: List[Dict[str, float]] = field(default_factory=list)  # one per metric: {seed: score}
    derived: Optional[str] = None      # how an average was made
    published: Optional[str] = None
    problem: Optional[str] = None

    @property
    def complete(self) -> bool:
        return bool(self.stats) and all(stat is not None for stat in self.stats)


def mean_std(values: Sequence[float]) -> Stat:
    """Mean and sample standard deviation over seeds, as ``xlint finetune`` reports them:

    ``mean = (1/n) sum_s x_s``, ``std = sqrt(sum_s (x_s - mean)^2 / (n - 1))`` (None when n = 1).
    """
    return Stat(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


_SUMMARY_KEY = {"avg": "average", "tgt_avg": "target_average"}


def seed_scores(results: Mapping[str, Any], score: str, metric: str) -> Dict[str, float]:
    """{seed: test score} of one summary group (a language, ``avg`` or ``tgt_avg``) and metric.

    Raises ``LookupError`` with a readable reason when the results lack it."""
    test = results.get("test")
    if not isinstance(test, Mapping) or not isinstance(test.get("per_seed"), Mapping):
        raise LookupError("no test results (run without --no-evaluate)")
    out: Dict[str, float] = {}
    for seed, result in test["per_seed"].items():
        group = result.get(_SUMMARY_KEY[score]) if score in _SUMMARY_KEY else (result.get("scores") or {}).get(score)
        if not isinstance(group, Mapping):
            languages = ", ".join(result.get("scores") or {}) or "none"
            raise LookupError(f"no test score for {score} (it has {languages})")
        if metric not in group:
            raise LookupError(f"no {metric} for {score} (metrics: {', '.join(group)})")
        out[str(seed)] = float(group[metric])
    if not out:
        raise LookupError("no seeds in the test results")
    return out


@dataclass
class Table:
    spec: TableSpec
    cells: Dict[Tuple[str, str], Cell]
    sources: List[str]                 # footnote n is sources[n - 1]
    missing: List[str]
    notes: List[str]
    with_published: bool


def _find(run_dirs: Sequence[Path], relative: str) -> Tuple[Optional[Path], List[Path]]:
    found = [run_dir / relative for run_dir in run_dirs if (run_dir / relative).is_file()]
    return (found[0] if found else None), found[1:]


def _read_results(path: Path) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"unreadable ({error})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, None


def build_table(spec: TableSpec, run_dirs: Sequence[Path], with_published: bool = False) -> Table:
    """Every cell of ``spec`` from the runs below ``run_dirs`` (searched in order; the first holding a
    results.json wins), the averages, and with ``with_published`` the paper's numbers."""
    published = published_cells(spec) if with_published else {}
    cells: Dict[Tuple[str, str], Cell] = {}
    sources: List[str] = []
    missing: List[str] = []
    notes: List[str] = []
    cache: Dict[Path, Tuple[Optional[Dict[str, Any]], Optional[str]]] = {}
    seen_relative: Dict[str, Optional[Path]] = {}
    averages: List[Tuple[Group, Axis, Group, Axis]] = []
    for section, row in spec.rows():
        for group, column in spec.columns():
            ids = (row_id(section, row), column_id(group, column))
            cell = Cell(*ids, published=published.get(ids))
            cells[ids] = cell
            if "average" in cell_vars(spec, section, row, group, column) and row.ours:
                averages.append((section, row, group, column))
                continue
            source = cell_source(spec, section, row, group, column)
            if source is None:
                continue
            where = f"{row.label} / {section.label} / {group.label} {column.label}".replace("  ", " ")
            if source.path not in seen_relative:
                found, others = _find(run_dirs, source.path)
                seen_relative[source.path] = found
                if others:
                    notes.append(f"{source.path} is in several RUN_DIRs; using {found} (not "
                                 f"{', '.join(map(str, others))})")
            path = seen_relative[source.path]
            if path is None:
                cell.problem = "missing"
                missing.append(f"{where}: no {source.path} under {', '.join(map(str, run_dirs))}")
                continue
            if path not in cache:
                cache[path] = _read_results(path)
            results, problem = cache[path]
            if results is None:
                cell.problem = problem
                missing.append(f"{where}: {path}: {problem}")
                continue
            stats: List[Optional[Stat]] = []
            for metric in source.metrics:
                try:
                    scores = seed_scores(results, source.score, metric)
                except LookupError as error:
                    stats.append(None)
                    cell.problem = str(error)
                    missing.append(f"{where}: {path}: {error}")
                    continue
                stats.append(mean_std(list(scores.values())))
                cell.per_seed.append(scores)
                cell.seeds = sorted(scores, key=lambda s: (len(s), s))
            cell.stats = stats
            cell.source = str(path)
            if cell.complete:  # only the files that fill a cell are footnoted
                if str(path) not in sources:
                    sources.append(str(path))
                cell.key = sources.index(str(path)) + 1
    for section, row, group, column in averages:
        _average(spec, cells, section, row, group, column, missing)
    return Table(spec, cells, sources, missing, notes, with_published)


def _average(spec: TableSpec, cells: Dict[Tuple[str, str], Cell], section: Group, row: Axis, group: Group,
             column: Axis, missing: List[str]) -> None:
    """The paper's avg column over the row's L language cells of the group.

    With the same seeds everywhere: ``avg_s = (1/L) sum_l x_{l,s}`` per seed s, then :func:`mean_std`
    over the seeds (its mean equals the mean of the L cells' means); otherwise the mean of the means.
    """
    cell = cells[(row_id(section, row), column_id(group, column))]
    members = cell_vars(spec, section, row, group, column)["average"].split()
    parts = [cells[(row_id(section, row), f"{group.key}/{key}")] for key in members]
    lacking = [key for key, part in zip(members, parts) if not part.complete]
    where = f"{row.label} / {section.label} / {group.label} {column.label}".replace("  ", " ")
    if lacking:
        cell.problem = f"needs {', '.join(lacking)}"
        missing.append(f"{where}: the average needs {', '.join(lacking)}")
        return
    n_metrics = len(parts[0].stats)
    same_seeds = all(part.seeds == parts[0].seeds for part in parts)
    stats: List[Optional[Stat]] = []
    if same_seeds:
        # per seed, the average over the languages; then mean ± std over seeds
        for m in range(n_metrics):
            stats.append(mean_std([statistics.fmean(part.per_seed[m][seed] for part in parts)
                                   for seed in parts[0].seeds]))
        cell.derived = f"per seed ({', '.join(parts[0].seeds)}), the mean over {', '.join(members)}"
        cell.seeds = list(parts[0].seeds)
    else:
        for m in range(n_metrics):
            means = [part.stats[m].mean for part in parts]  # type: ignore[union-attr]
            stats.append(Stat(statistics.fmean(means), None, len(means)))
        cell.derived = f"the mean of the means over {', '.join(members)} (their seeds differ)"
    cell.stats = stats


# --------------------------------------------------------------------------- rendering


def format_stat(stat: Optional[Stat], decimals: int) -> str:
    if stat is None:
        return ""
    if stat.std is None:
        return f"{stat.mean:.{decimals}f}"
    return f"{stat.mean:.{decimals}f} ± {stat.std:.{decimals}f}"


def cell_text(cell: Cell, decimals: int) -> str:
    """Our cell as printed: ``mean ± std`` per metric joined by `` / `` (empty when incomplete)."""
    if not cell.complete:
        return ""
    return " / ".join(format_stat(stat, decimals) for stat in cell.stats)


def _row_plan(table: Table) -> List[Tuple[str, Any]]:
    """("section", Group) and ("row", (Group, Axis, "ours" | "paper")) in print order."""
    plan: List[Tuple[str, Any]] = []
    for section in table.spec.sections:
        if section.label and len(table.spec.sections) > 1:
            plan.append(("section", section))
        for row in section.items:
            if row.ours:
                plan.append(("row", (section, row, "ours")))
            if table.with_published and any(table.cells[(row_id(section, row), column_id(g, c))].published
                                            for g, c in table.spec.columns()):
                plan.append(("row", (section, row, "paper")))
    return plan


def column_labels(spec: TableSpec) -> List[str]:
    return [f"{group.label} {column.label}".strip() for group, column in spec.columns()]


def _corner(spec: TableSpec) -> str:
    return spec.sections[0].label if len(spec.sections) == 1 and spec.sections[0].label else "Model"


def _row_label(row: Axis, kind: str) -> str:
    return f"{row.label} (paper)" if kind == "paper" else row.label


def to_markdown(table: Table, decimals: int = 1) -> str:
    spec = table.spec
    labels = column_labels(spec)
    ours = "ours: mean ± std over seeds, [n] = its results.json below"
    lines = [f"**{PAPER_NAMES.get(spec.paper, spec.paper)} Table {spec.table}: {spec.title}** ({ours}"
             + ("; (paper) rows: the published numbers" if table.with_published else "") + ")", "",
             "| " + " | ".join([_corner(spec)] + labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for kind, item in _row_plan(table):
        if kind == "section":
            lines.append(f"| *{item.label}* |" + " |" * len(labels))
            continue
        section, row, which = item
        texts = []
        for group, column in spec.columns():
            cell = table.cells[(row_id(section, row), column_id(group, column))]
            if which == "paper":
                texts.append(f"*{cell.published}*" if cell.published else "")
                continue
            text = cell_text(cell, decimals)
            if text and cell.key is not None:
                text += f" [{cell.key}]"
            elif text and cell.derived:
                text += " †"
            texts.append(text)
        lines.append("| " + " | ".join([_row_label(row, which)] + texts) + " |")
    lines.append("")
    if any(cell.derived for cell in table.cells.values()):
        lines.append("† the mean over the row's languages of its group (per seed when the seeds match).")
    if spec.note:
        lines.append(f"Note: {spec.note}")
    if table.sources:
        lines += ["", "Sources:"] + [f"[{n}] {path}" for n, path in enumerate(table.sources, start=1)]
    lines += ["", f"Missing ({len(table.missing)}):" if table.missing else "Missing: nothing."]
    lines += [f"- {entry}" for entry in table.missing]
    lines += [f"- note: {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def to_csv(table: Table, decimals: int = 1) -> str:
    """The table in the paper's shape: section, model, kind (ours | paper), one column per paper column."""
    spec = table.spec
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "model", "kind"] + column_labels(spec))
    for kind, item in _row_plan(table):
        if kind == "section":
            continue
        section, row, which = item
        values = []
        for group, column in spec.columns():
            cell = table.cells[(row_id(section, row), column_id(group, column))]
            values.append(cell.published or "" if which == "paper" else cell_text(cell, decimals))
        writer.writerow([section.label, row.label, which] + values)
    return out.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Text for LaTeX: its special characters escaped, ± as math, Guo et al.'s sets S^II as $S^{II}$."""
    escaped = "".join(_LATEX_SPECIAL.get(char, char) for char in text)
    escaped = re.sub(r"\b([SV])\\textasciicircum\{\}(I+)\b", r"$\1^{\2}$", escaped)
    return escaped.replace("±", r"$\pm$")


def to_latex(table: Table, decimals: int = 1) -> str:
    """A ``table`` environment (booktabs) in the paper's shape; superscripts point at the sources list."""
    spec = table.spec
    columns = spec.columns()
    lines = [r"% generated by xlint report; needs \usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
             r"\footnotesize", r"\begin{tabular}{l" + "c" * len(columns) + "}", r"\toprule"]
    if any(group.label for group in spec.column_groups):
        header = [latex_escape(_corner(spec))]
        header += [rf"\multicolumn{{{len(group.items)}}}{{c}}{{{latex_escape(group.label)}}}"
                   for group in spec.column_groups]
        lines.append(" & ".join(header) + r" \\")
        lines.append(" & ".join([""] + [latex_escape(column.label) for _, column in columns]) + r" \\")
    else:
        lines.append(" & ".join([latex_escape(_corner(spec))] + [latex_escape(c.label) for _, c in columns]) + r" \\")
    lines.append(r"\midrule")
    for kind, item in _row_plan(table):
        if kind == "section":
            lines.append(rf"\multicolumn{{{len(columns) + 1}}}{{l}}{{\textit{{{latex_escape(item.label)}}}}} \\")
            continue
        section, row, which = item
        texts = [latex_escape(_row_label(row, which))]
        for group, column in columns:
            cell = table.cells[(row_id(section, row), column_id(group, column))]
            if which == "paper":
                texts.append(rf"\textit{{{latex_escape(cell.published)}}}" if cell.published else "")
                continue
            text = latex_escape(cell_text(cell, decimals))
            if text and cell.key is not None:
                text += rf"\textsuperscript{{{cell.key}}}"
            elif text and cell.derived:
                text += r"\textsuperscript{\dag}"
            texts.append(text)
        lines.append(" & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    caption = f"{PAPER_NAMES.get(spec.paper, spec.paper)} Table {spec.table}: {spec.title}. Ours: mean ± std over seeds"
    caption = latex_escape(caption)
    lines.append(r"\caption{" + caption + (r"; \textit{(paper)}: published." if table.with_published else ".")
                 + "}")
    lines.append(r"\end{table}")
    for n, path in enumerate(table.sources, start=1):
        lines.append(f"% [{n}] {path}")
    for entry in table.missing:
        lines.append(f"% missing: {entry}")
    return "\n".join(lines) + "\n"


def to_json(table: Table, decimals: int = 1) -> Dict[str, Any]:
    """Every cell with its numbers, source, seeds and published text; the missing list."""
    spec = table.spec
    cells = []
    for (row, column), cell in table.cells.items():
        cells.append({"row": row, "column": column, "text": cell_text(cell, decimals),
                      "stats": [None if s is None else {"mean": s.mean, "std": s.std, "n": s.n} for s in cell.stats],
                      "source": cell.source, "key": cell.key, "seeds": cell.seeds, "derived": cell.derived,
                      "published": cell.published, "problem": cell.problem})
    return {"paper": spec.paper, "table": spec.table, "title": spec.title, "columns": column_labels(spec),
            "cells": cells, "sources": table.sources, "missing": table.missing, "notes": table.notes}
