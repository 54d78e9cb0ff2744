"""``xlint report``: the papers' tables from results.json files, beside the published numbers.

The results.json fixtures are written here in the format ``xlint finetune`` writes
(``test.per_seed[seed].scores[lang][metric]``, ``average``/``target_average``, and the
summary that :func:`xlint.cli.finetune_report.aggregate_seeds` makes); every expected
number is computed by hand (numpy) from the per-seed scores.
"""
from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import REPO_ROOT

from xlint.cli.finetune_report import aggregate_seeds
from xlint.cli.main import cli
from xlint.cli.report_tables import (
    SPECS,
    build_table,
    cell_source,
    column_id,
    get_spec,
    latex_escape,
    load_published,
    normalise_printed,
    printed_numbers,
    row_id,
    to_csv,
    to_json,
    to_latex,
    to_markdown,
)

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "papers"
PAPER_TEXTS = REPO_ROOT.parent / "shared" / "papers"
PAPER_FILES = {"wang2020": "wang2020_negative_interference.md", "guo2023": "guo2023_finetuning_slow_and_fast.md"}
KIND_METRICS = {"pos": ("acc", "f1"), "ner": ("f1", "precision", "recall"), "nli": ("acc",), "qa": ("f1", "em")}
KIND_TASK = {"pos": "tagging", "ner": "tagging", "nli": "classification", "qa": "qa"}


def write_results(path: Path, kind: str, setting: str, source: str, scores: Dict[int, Dict[str, Dict[str, float]]],
                  evaluate: bool = True) -> Path:
    """A results.json as ``xlint finetune`` writes it: ``scores[seed][lang][metric]`` (every metric of the kind)."""
    metrics = KIND_METRICS[kind]
    per_seed = {}
    for seed, by_lang in scores.items():
        full = {lang: {m: values.get(m, 50.0) for m in metrics} for lang, values in by_lang.items()}
        result = {"checkpoint": f"/runs/bs32-lr2e-05/seed{seed}/checkpoint_best.pt", "split": "test",
                  "task": KIND_TASK[kind], "kind": kind, "metrics": list(metrics), "train_languages": [source],
                  "examples": {lang: 10 for lang in full}, "scores": full}
        if len(full) > 1:
            result["average"] = {m: float(np.mean([full[lang][m] for lang in full])) for m in metrics}
            targets = [lang for lang in full if lang != source]
            result["target_average"] = {m: float(np.mean([full[lang][m] for lang in targets])) for m in metrics}
        per_seed[seed] = result
    seeds = sorted(scores)
    results = {"task": KIND_TASK[kind], "kind": kind, "setting": setting, "source": source,
               "train_languages": [source], "test_languages": list(next(iter(scores.values()))), "seeds": seeds,
               "selection": {"metric": f"f1_{source}", "rule": "source dev (zero-shot rule)"}, "epochs": 10,
               "grid": [], "chosen": {"name": "bs32-lr2e-05", "runs": []}}
    if evaluate:
        results["test"] = {"metrics": list(metrics), "per_seed": {str(s): r for s, r in per_seed.items()},
                           "summary": aggregate_seeds(per_seed)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results), encoding="utf-8")
    return path


def sample_std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1))


def cell(table, row: str, column: str):
    return table.cells[(row, column)]


# --------------------------------------------------------------------------- a run directory for Table 2


@pytest.fixture()
def table2_runs(tmp_path) -> Path:
    """ar: Mono and JointPair NER within (3 seeds), JointPair NER zero-shot (3 seeds); fr: JointPair NER within
    (3 seeds); everything else missing."""
    root = tmp_path / "runs"
    write_results(root / "ar/mono/ner-within/results.json", "ner", "within", "ar",
                  {1: {"ar": {"f1": 88.0}}, 2: {"ar": {"f1": 89.0}}, 3: {"ar": {"f1": 90.5}}})
    write_results(root / "ar/jointpair/ner-within/results.json", "ner", "within", "ar",
                  {1: {"ar": {"f1": 86.0}}, 2: {"ar": {"f1": 87.25}}, 3: {"ar": {"f1": 85.0}}})
    write_results(root / "ar/jointpair/ner-zero-shot/results.json", "ner", "zero-shot", "en",
                  {s: {"en": {"f1": 80.0 + s}, "ar": {"f1": 30.0 + 2 * s}} for s in (1, 2, 3)})
    write_results(root / "fr/jointpair/ner-within/results.json", "ner", "within", "fr",
                  {1: {"fr": {"f1": 84.0}}, 2: {"fr": {"f1": 85.0}}, 3: {"fr": {"f1": 86.0}}})
    return root


def test_table2_shape_language_order_and_mean_std(table2_runs):
    spec = get_spec("wang2020", "2")
    table = build_table(spec, [table2_runs])
    assert [column_id(g, c) for g, c in spec.columns()] == (
        [f"ner/{lang}" for lang in "ar fr ru hi sw te avg".split()]
        + [f"pos/{lang}" for lang in "ar fr ru hi te avg".split()])
    assert [row_id(s, r) for s, r in spec.rows()] == (
        [f"within/{r}" for r in "mono jointpair ffn attn adapt share-adapt meta-adapt xlm".split()]
        + [f"zero-shot/{r}" for r in "jointpair ffn attn adapt share-adapt meta-adapt xlm".split()])
    mono = cell(table, "within/mono", "ner/ar")
    assert mono.stats[0].mean == pytest.approx(np.mean([88.0, 89.0, 90.5]))
    assert mono.stats[0].std == pytest.approx(sample_std([88.0, 89.0, 90.5]))
    assert mono.seeds == ["1", "2", "3"]
    zero = cell(table, "zero-shot/jointpair", "ner/ar")  # the target's score, not the source's
    assert zero.stats[0].mean == pytest.approx(np.mean([32.0, 34.0, 36.0]))
    markdown = to_markdown(table)
    header = next(line for line in markdown.splitlines() if line.startswith("| Model"))
    assert header.split(" | ")[1:4] == ["NER (F1) ar", "NER (F1) fr", "NER (F1) ru"]
    mono_line = next(line for line in markdown.splitlines() if line.startswith("| Mono |"))
    assert f"{np.mean([88.0, 89.0, 90.5]):.1f} ± {sample_std([88.0, 89.0, 90.5]):.1f}" in mono_line
    # sections in the paper's order, Mono only within-language
    labels = [line.split(" | ")[0].strip("| ") for line in markdown.splitlines() if line.startswith("| ")]
    assert labels[:4] == ["Model", "*Within-language Monolingual*", "Mono", "JointPair"]
    assert labels.count("Mono") == 1 and labels.count("JointPair") == 2 and "XLM" not in labels


def test_provenance_marks_name_each_results_file(table2_runs):
    table = build_table(get_spec("wang2020", "2"), [table2_runs])
    markdown = to_markdown(table)
    for (row, column), path in {("within/mono", "ner/ar"): "ar/mono/ner-within/results.json",
                                ("zero-shot/jointpair", "ner/ar"): "ar/jointpair/ner-zero-shot/results.json"}.items():
        item = cell(table, row, column)
        assert item.source == str(table2_runs / path)
        assert f"[{item.key}] {table2_runs / path}" in markdown
    keys = [c.key for c in table.cells.values() if c.key is not None]
    assert sorted(set(keys)) == list(range(1, len(table.sources) + 1)) == [1, 2, 3, 4]


def test_missing_runs_are_empty_cells_and_listed(table2_runs):
    table = build_table(get_spec("wang2020", "2"), [table2_runs])
    assert cell(table, "within/ffn", "ner/ar").stats == []
    assert cell(table, "within/ffn", "ner/ar").problem == "missing"
    assert any(entry.startswith("+ ffn / Within-language Monolingual / NER (F1) ar: no ar/ffn/ner-within/results.json")
               for entry in table.missing)
    # the avg needs every language; the XLM rows (the paper's only) are never missing
    assert cell(table, "within/jointpair", "ner/avg").problem == "needs ru, hi, sw, te"
    assert not any("XLM" in entry for entry in table.missing)
    # 13 model rows (7 within, 6 zero-shot; XLM is the paper's) x 11 language cells, 4 of them found; 2 avg each
    assert len([e for e in table.missing if "the average needs" not in e]) == 13 * 11 - 4
    assert len([e for e in table.missing if "the average needs" in e]) == 13 * 2


def test_average_column_is_per_seed_mean_over_languages(tmp_path):
    root = tmp_path / "runs"
    values = {"ar": [70.0, 72.0], "ru": [60.0, 61.0], "sw": [50.0, 55.0], "te": [40.0, 41.0]}
    ems = {"ar": [60.0, 61.0], "ru": [50.0, 52.0], "sw": [40.0, 40.0], "te": [30.0, 33.0]}
    for lang in values:
        write_results(root / f"{lang}/mono/tydiqa-within/results.json", "qa", "within", lang,
                      {seed: {lang: {"f1": values[lang][i], "em": ems[lang][i]}} for i, seed in enumerate((1, 2))})
    table = build_table(get_spec("wang2020", "7"), [root])
    avg = cell(table, "within/mono", "qa/avg")
    per_seed_f1 = [np.mean([values[lang][i] for lang in values]) for i in range(2)]
    per_seed_em = [np.mean([ems[lang][i] for lang in ems]) for i in range(2)]
    assert avg.stats[0].mean == pytest.approx(np.mean(per_seed_f1))
    assert avg.stats[0].std == pytest.approx(sample_std(per_seed_f1))
    assert avg.stats[1].mean == pytest.approx(np.mean(per_seed_em))
    assert avg.stats[1].std == pytest.approx(sample_std(per_seed_em))
    line = next(line for line in to_markdown(table).splitlines() if line.startswith("| Mono |"))
    assert f"{np.mean(per_seed_f1):.1f} ± {sample_std(per_seed_f1):.1f} / {np.mean(per_seed_em):.1f} ± " in line
    assert line.rstrip(" |").endswith("†")
    # seeds that differ: the mean of the means, no std
    write_results(root / "te/mono/tydiqa-within/results.json", "qa", "within", "te",
                  {5: {"te": {"f1": 40.0, "em": 30.0}}})
    table = build_table(get_spec("wang2020", "7"), [root])
    avg = cell(table, "within/mono", "qa/avg")
    assert avg.stats[0].mean == pytest.approx(np.mean([71.0, 60.5, 52.5, 40.0])) and avg.stats[0].std is None
    assert "seeds differ" in avg.derived


def test_unfinished_or_unreadable_results_are_listed_not_raised(tmp_path):
    root = tmp_path / "runs"
    write_results(root / "ar/mono/ner-within/results.json", "ner", "within", "ar", {1: {"ar": {"f1": 80.0}}},
                  evaluate=False)
    (root / "fr/mono/ner-within").mkdir(parents=True)
    (root / "fr/mono/ner-within/results.json").write_text("{ half", encoding="utf-8")
    write_results(root / "ru/mono/ner-within/results.json", "ner", "within", "ru", {1: {"fr": {"f1": 80.0}}})
    table = build_table(get_spec("wang2020", "2"), [root])
    assert "no test results" in cell(table, "within/mono", "ner/ar").problem
    assert cell(table, "within/mono", "ner/fr").problem.startswith("unreadable")
    assert cell(table, "within/mono", "ner/ru").problem == "no test score for ru (it has fr)"
    for lang in ("ar", "fr", "ru"):
        assert any(f"{lang}/mono/ner-within/results.json" in entry for entry in table.missing)
    assert table.sources == [] and "[1]" not in to_markdown(table)  # no file filled a cell


def test_several_run_dirs_first_wins_and_fill_each_other(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write_results(first / "ar/mono/ner-within/results.json", "ner", "within", "ar", {1: {"ar": {"f1": 80.0}}})
    write_results(second / "ar/mono/ner-within/results.json", "ner", "within", "ar", {1: {"ar": {"f1": 10.0}}})
    write_results(second / "fr/mono/ner-within/results.json", "ner", "within", "fr", {1: {"fr": {"f1": 70.0}}})
    table = build_table(get_spec("wang2020", "2"), [first, second])
    assert cell(table, "within/mono", "ner/ar").stats[0].mean == 80.0
    assert cell(table, "within/mono", "ner/fr").stats[0].mean == 70.0
    assert cell(table, "within/mono", "ner/ar").stats[0].std is None
    assert any("several RUN_DIRs" in note for note in table.notes)


def test_table5_en_row_reads_the_english_score_of_the_zero_shot_runs(tmp_path):
    root = tmp_path / "runs"
    write_results(root / "fr_l/jointpair/ner-zero-shot/results.json", "ner", "zero-shot", "en",
                  {1: {"en": {"f1": 78.0}, "fr": {"f1": 40.0}}, 2: {"en": {"f1": 79.0}, "fr": {"f1": 41.0}}})
    # the fr_l model is tested on French: its runs are under fr_l/, their scores are fr's
    write_results(root / "fr_l/mono/ner-within/results.json", "ner", "within", "fr", {1: {"fr": {"f1": 81.0}}})
    write_results(root / "fr/mono/ner-within/results.json", "ner", "within", "fr", {1: {"fr": {"f1": 88.0}}})
    table = build_table(get_spec("wang2020", "5"), [root], with_published=True)
    item = cell(table, "en/jointpair", "ner/fr_l")
    assert item.stats[0].mean == pytest.approx(78.5)
    assert cell(table, "lang/mono", "ner/fr_l").stats[0].mean == 81.0
    assert cell(table, "lang/mono", "ner/fr").stats[0].mean == 88.0
    assert cell(table, "lang/jointpair", "ner/fr_l").problem == "missing"
    assert item.published == "78.4"
    assert cell(table, "lang/mono", "qa/ru").published == "63.1/49.2"


# --------------------------------------------------------------------------- outputs parse back


def test_csv_parses_back_in_the_paper_shape(table2_runs):
    table = build_table(get_spec("wang2020", "2"), [table2_runs], with_published=True)
    rows = list(csv.reader(io.StringIO(to_csv(table))))
    header = rows[0]
    assert header[:4] == ["section", "model", "kind", "NER (F1) ar"] and len(header) == 3 + 13
    ours = {(r[0], r[1]): dict(zip(header, r)) for r in rows[1:] if r[2] == "ours"}
    paper = {(r[0], r[1]): dict(zip(header, r)) for r in rows[1:] if r[2] == "paper"}
    mono = ours[("Within-language Monolingual", "Mono")]
    mean, std = (float(x) for x in mono["NER (F1) ar"].split(" ± "))
    assert mean == pytest.approx(np.mean([88.0, 89.0, 90.5]), abs=0.05)
    assert std == pytest.approx(sample_std([88.0, 89.0, 90.5]), abs=0.05)
    assert mono["NER (F1) fr"] == ""
    assert paper[("Within-language Monolingual", "Mono")]["NER (F1) ar"] == "89.2"
    assert paper[("Zero-shot Cross-lingual", "XLM")]["POS (F1) avg"] == "66.8"
    assert ("Zero-shot Cross-lingual", "XLM") not in ours
    assert len(ours) == 13 and len(paper) == 15


def _latex_rows(text: str) -> List[List[str]]:
    body = text.split(r"\midrule", 1)[1].split(r"\bottomrule", 1)[0]
    rows = []
    for line in body.strip().splitlines():
        line = re.sub(r"\s*\\\\\s*$", "", line)  # the row's closing \\
        rows.append([part.strip() for part in re.split(r"(?<!\\)&", line)])
    return rows


def test_latex_parses_back(table2_runs):
    table = build_table(get_spec("wang2020", "2"), [table2_runs], with_published=True)
    text = to_latex(table)
    assert text.count(r"\begin{tabular}") == 1 and r"\multicolumn{7}{c}{NER (F1)}" in text
    rows = _latex_rows(text)
    assert rows[0] == [r"\multicolumn{14}{l}{\textit{Within-language Monolingual}}"]
    assert all(len(row) == 14 for row in rows[1:] if not row[0].startswith(r"\multicolumn"))
    mono = next(row for row in rows if row[0] == "Mono")
    match = re.fullmatch(r"([\d.]+) \$\\pm\$ ([\d.]+)\\textsuperscript\{(\d+)\}", mono[1])
    assert match, mono[1]
    assert float(match.group(1)) == pytest.approx(np.mean([88.0, 89.0, 90.5]), abs=0.05)
    assert table.sources[int(match.group(3)) - 1] == str(table2_runs / "ar/mono/ner-within/results.json")
    paper_mono = next(row for row in rows if row[0] == "Mono (paper)")
    assert paper_mono[1] == r"\textit{89.2}"
    assert f"% [1] {table.sources[0]}" in text


def test_latex_escapes_underscores_and_pm():
    table = build_table(get_spec("wang2020", "5"), [], with_published=True)
    body = to_latex(table).split(r"\end{tabular}")[0]  # the comments below it hold raw paths
    assert r"fr\_l" in body and "fr_l" not in body.replace(r"fr\_l", "")
    table = build_table(get_spec("guo2023", "1"), [], with_published=True)
    assert r"74.7 $\pm$ 0.2" in to_latex(table)
    header = to_latex(build_table(get_spec("guo2023", "8"), [])).split(r"\midrule")[0]
    assert r"Only $S^{I}$ & Only $S^{II}$ & $S^{II}$ to $S^{I}$" in header and "textasciicircum" not in header
    assert latex_escape("a_b & 50% ~ {x}") == r"a\_b \& 50\% \textasciitilde{} \{x\}"


def test_json_holds_every_cell_with_its_source(table2_runs):
    table = build_table(get_spec("wang2020", "2"), [table2_runs])
    payload = json.loads(json.dumps(to_json(table)))
    assert len(payload["cells"]) == 15 * 13
    mono = next(c for c in payload["cells"] if c["row"] == "within/mono" and c["column"] == "ner/ar")
    assert mono["source"].endswith("ar/mono/ner-within/results.json") and mono["seeds"] == ["1", "2", "3"]
    assert payload["missing"] == table.missing


# --------------------------------------------------------------------------- the command


def test_command_writes_every_format_and_exits_0_with_missing_runs(table2_runs, tmp_path):
    out = tmp_path / "out" / "t2"
    result = CliRunner().invoke(cli, ["report", "--paper", "wang2020", "--table", "2", "--published",
                                      "--out", str(out), str(table2_runs)])
    assert result.exit_code == 0, result.output
    assert "| Mono (paper) | *89.2* |" in result.output
    assert "Missing (" in result.output
    for ext in ("md", "csv", "tex", "json"):
        assert (tmp_path / "out" / f"t2.{ext}").is_file()
    assert (tmp_path / "out" / "t2.md").read_text(encoding="utf-8") in result.output
    strict = CliRunner().invoke(cli, ["report", "--paper", "wang2020", "--table", "2", "--strict",
                                      "--out", str(out), str(table2_runs)])
    assert strict.exit_code == 1


def test_command_default_output_next_to_the_runs(table2_runs):
    result = CliRunner().invoke(cli, ["report", "--paper", "wang2020", "--table", "3", str(table2_runs)])
    assert result.exit_code == 0, result.output
    assert (table2_runs / "wang2020_table3.md").is_file() and (table2_runs / "wang2020_table3.csv").is_file()


def test_command_refuses_bad_input_in_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["report", "--paper", "wang2020", "--table", "9", str(tmp_path)])
    assert result.exit_code == 2 and "no table '9' for wang2020 (tables: 2, 3, 4, 5, 6, 7)" in result.output
    result = CliRunner().invoke(cli, ["report", "--paper", "wang2020", "--table", "2", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "nope is not a directory" in result.output
    result = CliRunner().invoke(cli, ["report", "--paper", "wang2020", "--table", "2"])
    assert result.exit_code == 2 and "give at least one RUN_DIR" in result.output
    assert not list(tmp_path.iterdir())


def test_layout_lists_every_file_a_table_reads():
    result = CliRunner().invoke(cli, ["report", "--paper", "wang2020", "--table", "2", "--layout"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 13 * 11  # every (row, language) of a model row reads its own results.json
    assert lines[0].startswith("ar/mono/ner-within/results.json  <- Mono (Within-language Monolingual) NER (F1) ar")
    result = CliRunner().invoke(cli, ["report", "--paper", "guo2023", "--table", "2", "--layout"])
    assert "ours/ner-few-shot-20/results.json" in result.output
    help_text = CliRunner().invoke(cli, ["report", "--help"]).output
    assert "{col}/{row}/{task}-{setting}/results.json" in help_text and "{method}/{task}-{setting}" in help_text


def test_guo_tables_read_the_target_average_per_method(tmp_path):
    """Guo et al.'s layout is data: Table 2's few-shot columns and Table 4's source column need no code."""
    root = tmp_path / "guo"
    write_results(root / "ours/xnli-few-shot-10/results.json", "nli", "few-shot", "en",
                  {s: {"en": {"acc": 85.0}, "fr": {"acc": 70.0 + s}, "de": {"acc": 72.0 + s}} for s in (1, 2, 3, 4)})
    table = build_table(get_spec("guo2023", "2"), [root], with_published=True)
    item = cell(table, "method/ours", "xnli/10")
    per_seed = [np.mean([70.0 + s, 72.0 + s]) for s in (1, 2, 3, 4)]
    assert item.stats[0].mean == pytest.approx(np.mean(per_seed))
    assert item.stats[0].std == pytest.approx(sample_std(per_seed))
    assert item.published == "76.1 ± 0.2"
    write_results(root / "df/ner-zero-shot/results.json", "ner", "zero-shot", "en",
                  {1: {"en": {"f1": 82.0}, "fr": {"f1": 60.0}}})
    table = build_table(get_spec("guo2023", "4"), [root], with_published=True)
    assert cell(table, "dataset/ner", "df/source").stats[0].mean == 82.0
    assert cell(table, "dataset/ner", "df/non-source").stats[0].mean == 60.0
    # cells the paper leaves empty are not expected
    table = build_table(get_spec("guo2023", "5"), [root])
    assert cell_source(*_cell_axes(get_spec("guo2023", "5"), "dataset/ner", "c2/10")) is None
    assert not any("c_2" in entry and "NER" in entry for entry in table.missing)


def _cell_axes(spec, row: str, column: str):
    section, axis = next((s, r) for s, r in spec.rows() if row_id(s, r) == row)
    group, col = next((g, c) for g, c in spec.columns() if column_id(g, c) == column)
    return spec, section, axis, group, col


# --------------------------------------------------------------------------- the published numbers


def test_published_data_matches_the_specs():
    for (paper, number), spec in SPECS.items():
        if not number.isdigit():  # xlint's own table (the demo's data): nothing published
            assert number not in load_published(paper)["tables"]
            continue
        table = load_published(paper)["tables"][number]
        assert table["source"].startswith(f"Table {number}:")
        rows = {row_id(s, r) for s, r in spec.rows()}
        columns = {column_id(g, c) for g, c in spec.columns()}
        assert [row["row"] for row in table["rows"]] == [row_id(s, r) for s, r in spec.rows()], (paper, number)
        for row in table["rows"]:
            assert row["row"] in rows
            assert set(row["cells"]) <= columns, (paper, number, set(row["cells"]) - columns)
            expected = {c for c in columns if (row["row"], c) not in spec.absent}
            assert set(row["cells"]) == expected, (paper, number, row["row"], expected ^ set(row["cells"]))
            for text in row["cells"].values():
                assert printed_numbers(text), text
    wang = set(t for p, t in SPECS if p == "wang2020")
    guo = set(t for p, t in SPECS if p == "guo2023")
    assert wang == {"2", "3", "4", "5", "6", "7"} and guo == {"1", "2", "4", "5", "6", "7", "8", "pos"}


def _excerpt_rows(text: str, labels: Sequence[str]) -> List[tuple]:
    """(label, normalised cells) of the excerpt's data lines, in order: a line whose first field is the
    next expected label and which holds a number."""
    found, index = [], 0
    for line in text.splitlines():
        fields = line.split("\t")
        if index < len(labels) and fields[0].strip() == labels[index] and re.search(r"\d", "".join(fields[1:])):
            cells = [normalise_printed(field) for field in fields[1:]]
            while cells and not cells[-1]:
                cells.pop()
            found.append((labels[index], cells))
            index += 1
    return found


def _expected_rows(paper: str, number: str) -> List[tuple]:
    spec = get_spec(paper, number)
    published = load_published(paper)["tables"][number]
    rows = []
    for row in published["rows"]:
        cells = [normalise_printed(row["cells"].get(column_id(g, c), "")) for g, c in spec.columns()]
        while cells and not cells[-1]:
            cells.pop()
        rows.append((row["label"], cells))
    return rows


#: the paper tables (their numbers are transcribed); ``guo2023 pos`` is xlint's own table of the demo's data
TABLES = sorted((key for key in SPECS if key[1].isdigit()), key=lambda key: (key[0], int(key[1])))


def test_only_the_demo_table_is_not_a_paper_table():
    assert [key for key in SPECS if not key[1].isdigit()] == [("guo2023", "pos")]


@pytest.mark.parametrize("paper,number", TABLES, ids=[f"{p}-table{t}" for p, t in TABLES])
def test_published_numbers_match_the_paper_excerpt(paper, number):
    """Every transcribed number against the committed excerpt of the paper's text (always)."""
    excerpt = (FIXTURES / f"{paper}_table{number}.txt").read_text(encoding="utf-8")
    assert excerpt.rstrip("\n").splitlines()[-1].startswith(f"Table {number}:")
    expected = _expected_rows(paper, number)
    assert _excerpt_rows(excerpt, [label for label, _ in expected]) == expected


@pytest.mark.parametrize("paper,number", TABLES, ids=[f"{p}-table{t}" for p, t in TABLES])
def test_excerpts_are_verbatim_in_the_full_paper_text(paper, number):
    full = PAPER_TEXTS / PAPER_FILES[paper]
    if not full.is_file():
        pytest.skip(f"the full paper text {full} is not next to this checkout (the excerpt test still ran)")
    excerpt = (FIXTURES / f"{paper}_table{number}.txt").read_text(encoding="utf-8")
    text = full.read_text(encoding="utf-8")
    assert excerpt.rstrip("\n") in text
    expected = _expected_rows(paper, number)
    caption = text.index(excerpt.rstrip("\n").splitlines()[-1])
    start = text.rfind("\n\n", 0, text.rfind("\n\n", 0, caption))  # the block above the caption
    assert _excerpt_rows(text[start:caption], [label for label, _ in expected]) == expected


def test_a_sample_of_published_numbers_by_hand():
    """Independent of the parser: numbers read off the paper by eye."""
    cells = {(r["row"], k): v for r in load_published("wang2020")["tables"]["2"]["rows"] for k, v in r["cells"].items()}
    assert cells[("within/mono", "ner/ar")] == "89.2"
    assert cells[("zero-shot/meta-adapt", "pos/avg")] == "66.8"
    assert cells[("zero-shot/ffn", "ner/ru")] == "5.8"
    assert "pos/sw" not in {k for (_, k) in cells}
    t7 = {(r["row"], k): v for r in load_published("wang2020")["tables"]["7"]["rows"] for k, v in r["cells"].items()}
    assert t7[("within/meta-adapt", "qa/avg")] == "61.4/36.4"  # sic
    guo = {(r["row"], k): v for r in load_published("guo2023")["tables"]["5"]["rows"] for k, v in r["cells"].items()}
    assert guo[("dataset/mlqa", "c2/100")] == "27.3 ± 0.7"
    assert printed_numbers(guo[("dataset/mlqa", "c2/100")]) == [27.3, 0.7]


def test_published_numbers_are_package_data(tmp_path):
    """setup.py ships cli/published/*.json with the xlint.cli package (build_py copies package data)."""
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path / "lib")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for paper in ("wang2020", "guo2023"):
        shipped = tmp_path / "lib" / "xlint" / "cli" / "published" / f"{paper}.json"
        assert json.loads(shipped.read_text(encoding="utf-8")) == load_published(paper)
