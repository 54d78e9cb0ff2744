"""Guo et al. (2023) Fig. 3: the one-layer freeze / re-initialisation sweep, and the sets it implies.

**Layout** (each folder an ``xlint finetune --setting zero-shot`` SAVE_DIR holding ``results.json``)::

    SWEEP_DIR/df/TASK-zero-shot/                 plain fine-tuning (DF, the dotted line)
    SWEEP_DIR/freeze-layer-<k>/TASK-zero-shot/   --freeze <k>:all   (k = 1..L)
    SWEEP_DIR/reinit-layer-<k>/TASK-zero-shot/   --reinit <k>:all

**Score** of a run: the zero-shot target-language average test score (``tgt_avg``) of ``metric``,
the mean over its seeds, read with :func:`.report_tables.seed_scores` exactly as ``xlint report``
reads a Guo et al. cell.  ``metric`` defaults to the report's metric of the task (XNLI ``acc``,
MLQA and NER ``f1``), else the first metric of the runs' test results.  ``L`` is the highest ``k``
with a ``freeze-layer-<k>`` or ``reinit-layer-<k>`` folder; every absent or unreadable run of
``1..L`` (and DF) is an entry of :attr:`LayerSweep.missing`, never an error.

**Sets** (:func:`derive_sets`, the paper's Sec. 3 procedure read off Fig. 3), with DF's score ``b``:

* ``S^I`` = the layers ``k`` with ``reinit[k] < b - reinit_drop``: re-initialising them loses more
  than ``reinit_drop`` points, so they hold transferable (cross-lingual) knowledge; all weights.
* ``S^II`` = the layers of ``S^I`` with ``freeze[k] > b + freeze_gain``: freezing them helps.  The
  paper keeps ``S^II`` inside ``S^I`` and applies Policy II to their **feed-forward** weights only
  (Table 1's "Freeze feed-forward" is its best freezing row, Table 6 its worst re-init), so the
  spec is ``ffn``; a freeze-helping layer outside ``S^I`` is left out, with a warning.
* ``V^I`` = every layer above the highest ``S^I`` layer, all weights; ``V^II`` = the same layers'
  attention weights (Table 1's best "Enlarge" row).  A layer below the highest ``S^I`` layer that
  is not in ``S^I`` is in no set (K = 1), with a warning.

For a 12-layer XLM-R the paper reads 1-10:all / 1-4:ffn / 11-12:all / 11-12:attn off its Fig. 3.

**When nothing qualifies** the sets are empty (spec ``none``), never silently the depth rule's
defaults, and a warning says which: no ``S^I`` layer means no boundary, so ``S^I``, ``S^II``, ``V^I``
and ``V^II`` are all ``none`` and ``--method fsf`` with them is plain fine-tuning (every K = 1);
an ``S^I`` reaching layer ``L`` leaves ``V^I``/``V^II`` empty; no freeze-helping layer leaves
``S^II`` empty (Policy II acts on nothing).  Layers without a score count as not qualifying.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .report_tables import GUO_DATASETS, _read_results, seed_scores

SWEEP_KINDS = ("freeze", "reinit")
DF_DIR = "df"
SETTING = "zero-shot"
#: the report's metric of each Guo et al. dataset
DEFAULT_METRICS: Dict[str, str] = {axis.key: axis.vars["metric"] for axis in GUO_DATASETS}
_LAYER_DIR = re.compile(r"^(freeze|reinit)-layer-(\d+)$")
#: an encoder layer's state-dict entry: ``encoder.layers.3.`` (xlm_adapter), ``encoder.sentence_encoder.layers.3.``
_STATE_LAYER = re.compile(r"^encoder\.(?:sentence_encoder\.)?layers\.(\d+)\.")


def method_dir(kind: str, layer: int) -> str:
    """The sweep's method folder of one run: ``freeze-layer-3``, ``reinit-layer-3``."""
    if kind not in SWEEP_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SWEEP_KINDS)}, got {kind!r}")
    return f"{kind}-layer-{layer}"


def encoder_depth(pretrained: Path) -> int:
    """L of a pretrained checkpoint (a file, or an XLM-R release folder holding ``model.pt``):
    1 + the highest ``k`` of its ``encoder[.sentence_encoder].layers.<k>.`` state entries.

    Raises ``ValueError`` when the checkpoint has no such entries."""
    from ..preprocess.encoders import MODEL_FILE, load_checkpoint_state

    path = Path(pretrained)
    path = path / MODEL_FILE if path.is_dir() else path
    state = load_checkpoint_state(path)
    indices = [int(m.group(1)) for key in (state.get("model") or {}) if (m := _STATE_LAYER.match(key))]
    if not indices:
        raise ValueError("no encoder layers (encoder.layers.<k>.*) in its model state")
    return max(indices) + 1


def results_path(sweep_dir: Path, method: str, task: str) -> Path:
    return sweep_dir / method / f"{task}-{SETTING}" / "results.json"


@dataclass
class LayerSweep:
    """Scores of the sweep: DF's ``baseline`` (None when missing) and ``{layer: score}`` per kind."""

    metric: str
    baseline: Optional[float]
    freeze: Dict[int, float]
    reinit: Dict[int, float]
    missing: List[str]
    #: L: the highest layer index with a sweep folder (0 when there is none)
    num_layers: int = 0

    @property
    def empty(self) -> bool:
        return self.baseline is None and not self.freeze and not self.reinit

    def kinds(self) -> Dict[str, Dict[int, float]]:
        """``{"freeze": {k: score}, "reinit": {k: score}}`` (what the Fig. 3 drawing takes)."""
        return {"freeze": dict(self.freeze), "reinit": dict(self.reinit)}


def sweep_layers(sweep_dir: Path) -> int:
    """L: the highest ``k`` of the ``freeze-layer-<k>`` / ``reinit-layer-<k>`` folders (0: none)."""
    found = [int(m.group(2)) for child in sweep_dir.iterdir()
             if child.is_dir() and (m := _LAYER_DIR.match(child.name))]
    return max(found, default=0)


def _first_metric(paths: Sequence[Path]) -> Optional[str]:
    for path in paths:
        results, _ = _read_results(path) if path.is_file() else (None, None)
        metrics = ((results or {}).get("test") or {}).get("metrics") if isinstance(results, dict) else None
        if isinstance(metrics, list) and metrics:
            return str(metrics[0])
    return None


def _score(path: Path, metric: str, sweep_dir: Path) -> Tuple[Optional[float], Optional[str]]:
    """(mean over seeds of the target average, None) or (None, why not)."""
    shown = path.relative_to(sweep_dir)
    if not path.is_file():
        return None, f"{shown}: missing"
    results, problem = _read_results(path)
    if results is None:
        return None, f"{shown}: {problem}"
    try:
        scores = seed_scores(results, "tgt_avg", metric)
    except LookupError as error:
        return None, f"{shown}: {error}"
    return statistics.fmean(scores.values()), None


def read_layer_sweep(sweep_dir: Path, task: str, metric: Optional[str] = None) -> LayerSweep:
    """The sweep below ``sweep_dir`` for ``task`` (see the module docstring for layout and score).

    Raises ``FileNotFoundError`` when ``sweep_dir`` is not a folder; missing runs are listed."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such folder")
    num_layers = sweep_layers(sweep_dir)
    methods = [DF_DIR] + [method_dir(kind, k) for k in range(1, num_layers + 1) for kind in SWEEP_KINDS]
    paths = {method: results_path(sweep_dir, method, task) for method in methods}
    chosen = metric or DEFAULT_METRICS.get(task) or _first_metric(list(paths.values())) or "f1"
    values: Dict[str, float] = {}
    missing: List[str] = []
    for method, path in paths.items():
        value, problem = _score(path, chosen, sweep_dir)
        if problem is not None:
            missing.append(problem)
        else:
            values[method] = float(value)  # type: ignore[arg-type]
    per_kind = {kind: {k: values[method_dir(kind, k)] for k in range(1, num_layers + 1)
                       if method_dir(kind, k) in values} for kind in SWEEP_KINDS}
    return LayerSweep(chosen, values.get(DF_DIR), per_kind["freeze"], per_kind["reinit"], missing, num_layers)


# --------------------------------------------------------------------------- the sets


def compress_layers(layers: Sequence[int], kind: str) -> str:
    """A set spec of ``layers`` (any order) with runs compressed: ``[1, 2, 3, 5], "all"`` ->
    ``1-3:all,5:all``; no layers -> ``none``."""
    runs: List[List[int]] = []
    for layer in sorted(set(layers)):
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    if not runs:
        return "none"
    return ",".join(f"{run[0]}:{kind}" if len(run) == 1 else f"{run[0]}-{run[-1]}:{kind}" for run in runs)


@dataclass
class DerivedSets:
    """The four sets as layer lists and as ``--fsf-*`` specs, with the warnings of the derivation."""

    s1_layers: List[int]
    s2_layers: List[int]
    v_layers: List[int]
    warnings: List[str] = field(default_factory=list)

    @property
    def specs(self) -> Dict[str, str]:
        """``{"s1": ..., "s2": ..., "v1": ..., "v2": ...}`` in the set-spec syntax (``none``: empty)."""
        return {"s1": compress_layers(self.s1_layers, "all"), "s2": compress_layers(self.s2_layers, "ffn"),
                "v1": compress_layers(self.v_layers, "all"), "v2": compress_layers(self.v_layers, "attn")}

    def options(self) -> str:
        """One line for ``xlint finetune``: ``--fsf-s1 A --fsf-s2 B --fsf-v1 C --fsf-v2 D``."""
        return " ".join(f"--fsf-{name} {spec}" for name, spec in self.specs.items())


def _layers_text(layers: Sequence[int]) -> str:
    return ", ".join(map(str, layers))


def derive_sets(sweep: LayerSweep, reinit_drop: float, freeze_gain: float) -> DerivedSets:
    """S^I, S^II, V^I, V^II from the sweep by the rule of the module docstring.

    Raises ``ValueError`` without DF's score (every comparison is against it)."""
    if sweep.baseline is None:
        raise ValueError("no DF score (df/<task>-zero-shot/results.json): the sets compare every layer with it")
    base = sweep.baseline
    num_layers = max([sweep.num_layers, *sweep.freeze, *sweep.reinit], default=0)
    warnings: List[str] = []
    unscored = {kind: [k for k in range(1, num_layers + 1) if k not in scores]
                for kind, scores in sweep.kinds().items()}
    for kind, layers in unscored.items():
        if layers:
            warnings.append(f"layers {_layers_text(layers)} have no {kind} score: counted as not qualifying")
    s1 = [k for k, score in sorted(sweep.reinit.items()) if score < base - reinit_drop]
    helped = [k for k, score in sorted(sweep.freeze.items()) if score > base + freeze_gain]
    s2 = [k for k in helped if k in s1]
    if not s1:
        warnings.append(f"no layer's re-initialisation drops the score more than {reinit_drop:g} points below "
                        f"DF ({base:.2f}): S^I is empty, so no boundary for V either; all four sets are none and "
                        "--method fsf with them is plain fine-tuning (every K = 1). Lower --reinit-drop, or leave "
                        "out the --fsf-s*/--fsf-v* options for the depth rule's defaults")
        return DerivedSets([], [], [], warnings)
    outside = [k for k in helped if k not in s1]
    if outside:
        warnings.append(f"freezing layers {_layers_text(outside)} helps, but they are not in S^I: left out of S^II "
                        "(the paper keeps S^II inside S^I)")
    if not s2:
        warnings.append(f"no S^I layer's freezing beats DF by more than {freeze_gain:g} points: S^II is none "
                        "(Policy II acts on nothing)")
    top = max(s1)
    gaps = [k for k in range(1, top) if k not in s1]
    if gaps:
        warnings.append(f"layers {_layers_text(gaps)} lie below the highest S^I layer ({top}) but are not in S^I: "
                        "in no set (K = 1)")
    v_layers = list(range(top + 1, num_layers + 1))
    if not v_layers:
        warnings.append(f"S^I reaches the top layer ({top}): no layer above it, V^I and V^II are none "
                        "(Policies III and IV act on nothing)")
    return DerivedSets(s1, s2, v_layers, warnings)


def score_table(sweep: LayerSweep) -> List[str]:
    """The per-layer scores beside DF's, as Markdown lines (``-``: no score)."""
    def cell(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.2f}"

    def delta(value: Optional[float]) -> str:
        if value is None or sweep.baseline is None:
            return "-"
        return f"{value - sweep.baseline:+.2f}"

    lines = [f"DF ({sweep.metric}, target average): {cell(sweep.baseline)}", "",
             "| layer | freeze | Δ DF | re-init | Δ DF |", "|---|---|---|---|---|"]
    for k in range(1, sweep.num_layers + 1):
        frozen, reinit = sweep.freeze.get(k), sweep.reinit.get(k)
        lines.append(f"| {k} | {cell(frozen)} | {delta(frozen)} | {cell(reinit)} | {delta(reinit)} |")
    return lines


def sweep_from_scores(metric: str, baseline: Optional[float], scores: Mapping[str, Mapping[int, float]],
                      num_layers: Optional[int] = None) -> LayerSweep:
    """A :class:`LayerSweep` from numbers (tests, notebooks): ``scores = {"freeze": {k: s}, "reinit": {k: s}}``."""
    freeze = dict(scores.get("freeze", {}))
    reinit = dict(scores.get("reinit", {}))
    layers = num_layers if num_layers is not None else max([*freeze, *reinit], default=0)
    return LayerSweep(metric, baseline, freeze, reinit, [], layers)
