"""``xlint l0 compare``: read the runs' ``gates.json``, compare their ``log α`` and draw Fig. 4a/4b.

The numbers come from :mod:`xlint.analysis.gate_statistics`; this module groups runs by
language and seed, writes ``compare.json`` and the figures (matplotlib, Agg).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import click

from .commands_l0 import GATES_FILE


@dataclass
class GateRun:
    path: Path
    language: str
    seed: int
    num_updates: int
    names: List[str]
    keys: List[str]
    log_alpha: List[float]


def _read_run(path: Path) -> GateRun:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        run = GateRun(path, str(data["language"]), int(data["seed"]), int(data.get("num_updates", 0)),
                      list(data["names"]), list(data["keys"]), [float(v) for v in data["log_alpha"]])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise click.BadParameter(f"{path} is not an `xlint l0 train` gates file ({err})", param_hint="RUN") from None
    if not (len(run.names) == len(run.keys) == len(run.log_alpha)):
        raise click.BadParameter(f"{path}: names, keys and log_alpha differ in length", param_hint="RUN")
    return run


def load_runs(paths: Sequence[Path]) -> List[GateRun]:
    """Every run under ``paths`` (a gates.json, a job folder, or an ``l0 train`` save dir), sorted."""
    files: List[Path] = []
    for path in paths:
        if path.is_file():
            files.append(path)
        elif (path / GATES_FILE).is_file():
            files.append(path / GATES_FILE)
        else:
            found = sorted(path.glob(f"*/seed*/{GATES_FILE}"))
            if not found:
                raise click.BadParameter(f"no {GATES_FILE} in {path} (nor in {path}/<lang>/seed*/)",
                                         param_hint="RUN")
            files.extend(found)
    runs = [_read_run(f) for f in dict.fromkeys(files)]
    first = runs[0]
    for run in runs[1:]:
        if run.names != first.names:
            raise click.BadParameter(f"{run.path} gates other groups than {first.path} (another model or "
                                     "granularity)", param_hint="RUN")
    seen = set()
    for run in runs:
        if (run.language, run.seed) in seen:
            raise click.BadParameter(f"two runs of {run.language} seed {run.seed}", param_hint="RUN")
        seen.add((run.language, run.seed))
    return sorted(runs, key=lambda r: (r.language, r.seed))


def _layer_table(values: Dict[str, float]) -> Dict[str, Dict[str, float]]:
    """``{"layer3.attn": v}`` -> ``{"attn": {"3": v}, "ffn": {...}}``."""
    table: Dict[str, Dict[str, float]] = {}
    for key, value in values.items():
        layer, sublayer = key.split(".")
        table.setdefault(sublayer, {})[layer[len("layer"):]] = value
    return table


def compare_runs(runs: List[GateRun], pair: Optional[Sequence[str]] = None, top_k: int = 10) -> dict:
    """The comparison as plain data (see the module docstring of :mod:`.commands_l0`)."""
    import numpy as np

    from xlint.analysis.gate_statistics import (
        binarize, centered_cosine_by_key, cosine, cosine_by_key, density_by_key, extremes)

    keys = runs[0].keys
    by_language: Dict[str, List[GateRun]] = {}
    for run in runs:
        by_language.setdefault(run.language, []).append(run)
    languages = list(by_language)
    vectors = {(r.language, r.seed): np.asarray(r.log_alpha) for r in runs}

    def similarity(ra: GateRun, rb: GateRun) -> dict:
        va, vb = vectors[(ra.language, ra.seed)], vectors[(rb.language, rb.seed)]
        return {"languages": [ra.language, rb.language], "seeds": [ra.seed, rb.seed], "overall": cosine(va, vb),
                "per_layer": _layer_table(cosine_by_key(va, vb, keys)),
                "overall_centered": cosine(va - va.mean(), vb - vb.mean()),
                "per_layer_centered": _layer_table(centered_cosine_by_key(va, vb, keys))}

    between = [similarity(by_language[a][0], by_language[b][0]) for a, b in itertools.combinations(languages, 2)]
    within = [similarity(lang_runs[0], lang_runs[1]) for lang_runs in by_language.values() if len(lang_runs) >= 2]
    density = [{"language": r.language, "seed": r.seed,
                "per_layer": _layer_table(density_by_key(vectors[(r.language, r.seed)], keys)),
                "overall": float(binarize(vectors[(r.language, r.seed)]).mean())} for r in runs]

    extremes_entry = None
    if pair is None and len(languages) >= 2:
        pair = languages[:2]
    if pair is not None:
        for lang in pair:
            if lang not in by_language:
                raise click.BadParameter(f"no run of {lang} (runs: {', '.join(languages)})", param_hint="--pair")
        a, b = pair
        va, vb = vectors[(a, by_language[a][0].seed)], vectors[(b, by_language[b][0].seed)]
        negative, positive = extremes(va, top_k)
        names = runs[0].names

        def rows(index):
            return [{"group": names[i], a: float(va[i]), b: float(vb[i])} for i in index]

        extremes_entry = {"languages": [a, b], "most_negative": rows(negative), "most_positive": rows(positive)}
    return {"num_gates": len(keys), "runs": [{"language": r.language, "seed": r.seed, "num_updates": r.num_updates,
                                              "path": str(r.path)} for r in runs],
            "between_languages": between, "within_language": within, "density": density,
            "extremes": extremes_entry}


def write_comparison(result: dict, out: Path) -> Path:
    from xlint.preprocess.textio import write_json_atomic

    path = out / "compare.json"
    write_json_atomic(path, result)
    return path


def _save(fig, out: Path, stem: str) -> List[Path]:
    from xlint.preprocess.textio import atomic_output

    paths = []
    for suffix, dpi in ((".png", 110), (".pdf", None)):
        path = out / f"{stem}{suffix}"
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format=suffix[1:], dpi=dpi, bbox_inches="tight")
        paths.append(path)
    return paths


def plot_figures(result: dict, out: Path) -> List[Path]:
    """``fig4a_l0`` (cosine per layer, attention vs FFN; density per layer) and ``fig4b_l0`` (extremes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths: List[Path] = []
    colors = {"attn": "tab:blue", "ffn": "tab:orange"}
    fig, (ax_cos, ax_cen, ax_den) = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, field, title in ((ax_cos, "per_layer", "cosine of log α (paper)"),
                             (ax_cen, "per_layer_centered", "centred cosine (Pearson) of log α")):
        markers = itertools.cycle("osd^v<>")
        for entries, style in ((result["between_languages"], "-"), (result["within_language"], "--")):
            for entry in entries:
                label = "–".join(entry["languages"])
                marker = next(markers)
                for sublayer, table in entry[field].items():
                    layers = sorted(table, key=int)
                    ax.plot([int(x) for x in layers], [table[x] for x in layers], style, marker=marker,
                            color=colors.get(sublayer), alpha=0.9 if style == "-" else 0.6,
                            label=f"{sublayer} {label}")
        ax.set_xlabel("layer")
        ax.set_ylabel("similarity")
        ax.set_title(f"{title}\nsolid: between languages, dashed: two seeds", fontsize=8)
        ax.legend(fontsize=6)
    markers = itertools.cycle("osd^v<>")
    for entry in result["density"]:
        marker = next(markers)
        for sublayer, table in entry["per_layer"].items():
            layers = sorted(table, key=int)
            ax_den.plot([int(x) for x in layers], [table[x] for x in layers], marker=marker,
                        color=colors.get(sublayer), label=f"{sublayer} {entry['language']} s{entry['seed']}")
    ax_den.set_xlabel("layer")
    ax_den.set_ylabel("open gates after binarising")
    ax_den.set_ylim(-0.02, 1.02)
    ax_den.legend(fontsize=6)
    for ax in (ax_cos, ax_cen, ax_den):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    paths += _save(fig, out, "fig4a_l0")
    plt.close(fig)

    extremes = result.get("extremes")
    if extremes:
        a, b = extremes["languages"]
        rows = extremes["most_negative"] + extremes["most_positive"]
        fig, ax = plt.subplots(figsize=(7, 0.22 * len(rows) + 1.2))
        y = list(range(len(rows)))
        ax.barh([v - 0.2 for v in y], [r[a] for r in rows], height=0.4, label=a, color="tab:green")
        ax.barh([v + 0.2 for v in y], [r[b] for r in rows], height=0.4, label=b, color="tab:purple")
        ax.set_yticks(y)
        ax.set_yticklabels([r["group"] for r in rows], fontsize=6)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.6)
        ax.axhline(len(extremes["most_negative"]) - 0.5, color="grey", linewidth=0.6, linestyle=":")
        ax.set_xlabel("log α")
        ax.set_title(f"most negative and most positive groups of {a}, beside {b}", fontsize=8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths += _save(fig, out, "fig4b_l0")
        plt.close(fig)
    return paths
