"""Fine-tuning data, windows, metrics, routing and optimizer, checked in-process (no training).

The key check: validation metrics gathered batch by batch through fairseq's metric
aggregation equal seqeval / accuracy computed once on the whole evaluation set,
with sentences split over several windows and batches.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import xlint.user_dir  # noqa: F401  (registers the tasks)
from fairseq import options, tasks
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.logging import metrics

from xlint.cli.finetune_plan import ALL_GATHER_LIST_SIZE
from xlint.cli.main import cli
from xlint.preprocess import task_formats as tf
from xlint.preprocess.encode import encode_words
from xlint.preprocess.finetune_convert import FORMAT_VERSION as WRITER_VERSION
from xlint.metrics.xtreme import accuracy, pos_scores, span_scores
from xlint.user_dir.criterions.finetune_qa import best_spans
from xlint.user_dir.data.finetune_data import (
    FORMAT_VERSION,
    best_window,
    read_records,
    sliding_windows,
)
from xlint.user_dir.tasks.finetune_classification import truncate_pair

from test_finetune_support import LANGS, world

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "formats"


@pytest.fixture(scope="module")
def ft(tmp_path_factory):
    return world(tmp_path_factory)


def build(data: Path, task: str = "xlint_tagging", *extra: str, model_languages: str = "en,fr",
          variant: str = "adapter"):
    """Task, model and criterion built in-process from fairseq-train style arguments."""
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(data), "--task", task, "--criterion", task, "--arch", "xlm_adapter_tiny",
        "--model-languages", model_languages, "--language-specific", variant, "--cpu", *extra])
    cfg = convert_namespace_to_omegaconf(args)
    fairseq_task = tasks.setup_task(cfg.task)
    model = fairseq_task.build_model(cfg.model)
    return cfg, fairseq_task, model, fairseq_task.build_criterion(cfg.criterion)


# --------------------------------------------------------------------------- windows


def test_writer_and_reader_agree_on_the_format_version():
    assert WRITER_VERSION == FORMAT_VERSION


@pytest.mark.parametrize("length,window,stride", [(5, 8, 4), (8, 8, 4), (9, 8, 4), (30, 8, 3), (31, 7, 7),
                                                  (40, 10, 25)])
def test_windows_cover_every_position_and_best_window_maximises_context(length, window, stride):
    windows = sliding_windows(length, window, stride)
    assert windows[0][0] == 0 and windows[-1][1] == length
    assert all(end - start <= window for start, end in windows)
    for position in range(length):
        owners = [i for i, (s, e) in enumerate(windows) if s <= position < e]
        assert owners, position
        chosen = best_window(position, windows)
        start, end = windows[chosen]
        best = min(position - start, end - 1 - position)
        assert all(min(position - s, e - 1 - position) <= best for s, e in (windows[i] for i in owners))


def test_long_sentences_are_windowed_and_every_word_scored_once(ft):
    _, task, _, _ = build(ft.converted["pos"], "xlint_tagging", "--max-length", "16", "--valid-languages", "en,fr")
    dataset = task.load_dataset("valid")
    assert len(dataset) > dataset.num_examples  # some sentences needed several windows
    seen = {}
    for item in dataset.items:
        assert len(item["tokens"]) <= 16
        words = seen.setdefault(item["example"], [])
        words.extend(item["words"].tolist())
        # labels sit on each word's first subword
        record = dataset.examples[item["example"]][1]
        starts = [record["word_starts"][w] for w in item["words"]]
        assert [int(item["tokens"][p]) for p in item["positions"]] == [record["tokens"][s] for s in starts]
    for example, words in seen.items():
        record = dataset.examples[example][1]
        assert sorted(words) == list(range(len(record["words"]))), example
    assert max(len(r["words"]) for _, r in dataset.examples) > 14


# --------------------------------------------------------------------------- whole-set metrics


class TokenHashModel(torch.nn.Module):
    """Stands in for a model: a word's prediction depends only on its first subword id,
    so it is the same whichever window the word is scored from."""

    def __init__(self, num_labels: int):
        super().__init__()
        self.num_labels = num_labels

    def forward(self, src_tokens, src_lengths=None, src_lang_id=None, head=None, **kwargs):
        return torch.nn.functional.one_hot((src_tokens * 7 + 3) % self.num_labels, self.num_labels).float(), {}


def validate_like_fairseq(task, criterion, model, dataset, batch_size: int, ranks: int = 1) -> dict:
    """fairseq's validation loop: one reduce per step, gathered in a new root aggregator.

    With ``ranks`` > 1, consecutive batches stand for the data-parallel workers of one
    step: fairseq all-gathers their (pickled) logging outputs and reduces them together.
    """
    iterator = task.get_batch_iterator(dataset=dataset, max_sentences=batch_size, seed=1,
                                       disable_iterator_cache=True).next_epoch_itr(shuffle=False)
    logs = []
    for sample in iterator:
        _, _, log = criterion(model, sample)
        assert len(pickle.dumps(log)) < ALL_GATHER_LIST_SIZE // 64  # fits fairseq's all_gather_list
        logs.append(pickle.loads(pickle.dumps(log)) if ranks > 1 else log)
    assert len(logs) > 3
    with metrics.aggregate(new_root=True) as root:
        for step in range(0, len(logs), ranks):
            with metrics.aggregate() as per_batch:  # as Trainer._reduce_and_log_stats
                task.reduce_metrics(logs[step:step + ranks], criterion)
                per_batch.get_smoothed_values()
    return root.get_smoothed_values()


@pytest.mark.parametrize("name,ranks", [("pos", 1), ("ner", 1), ("pos", 2)])
def test_gathered_validation_metrics_equal_whole_set_seqeval(ft, name, ranks):
    _, task, _, criterion = build(ft.converted[name], "xlint_tagging", "--max-length", "12",
                                  "--train-languages", "en", "--valid-languages", "en,fr")
    model = TokenHashModel(len(task.labels)).eval()
    dataset = task.load_dataset("valid")
    stats = validate_like_fairseq(task, criterion, model, dataset, batch_size=5, ranks=ranks)

    expected = {}
    for lang in LANGS:
        gold, predicted = [], []
        for example_lang, record in dataset.examples:
            if example_lang != lang:
                continue
            gold.append(record["tags"])
            predicted.append([task.labels[(record["tokens"][s] * 7 + 3) % len(task.labels)]
                              for s in record["word_starts"]])
        if name == "pos":
            scores = pos_scores(gold, predicted)
            expected[lang] = {"acc": scores.accuracy, "f1": scores.f1}
        else:
            expected[lang] = {"f1": span_scores(gold, predicted).f1}
    for lang, values in expected.items():
        for metric, value in values.items():
            assert stats[f"{metric}_{lang}"] == pytest.approx(value, abs=1e-9), (lang, metric)
    for metric in expected["en"]:
        assert stats[f"{metric}_avg"] == pytest.approx((expected["en"][metric] + expected["fr"][metric]) / 2)
        assert stats[f"{metric}_tgt_avg"] == pytest.approx(expected["fr"][metric])  # en is the training language


def test_per_sentence_chunk_counts_are_not_whole_set_seqeval():
    """Why predictions are gathered rather than summed as per-batch counts: seqeval
    flattens all sentences into one sequence, and a sentence that starts with a tag of
    type '_' (X) continues the state left by the previous sentence, so summing
    per-sentence chunk counts can differ from seqeval on the whole set."""
    from seqeval.metrics.sequence_labeling import get_entities

    gold = [["SCONJ", "NOUN"], ["X", "NOUN"]]
    predicted = [["SCONJ", "O"], ["X", "NOUN"]]
    with pytest.warns(UserWarning):
        true_positives = gold_chunks = predicted_chunks = 0
        for g, p in zip(gold, predicted):
            g_chunks, p_chunks = set(get_entities(g)), set(get_entities(p))
            true_positives += len(g_chunks & p_chunks)
            gold_chunks += len(g_chunks)
            predicted_chunks += len(p_chunks)
    summed = 100 * 2 * true_positives / (gold_chunks + predicted_chunks)
    whole = pos_scores(gold, predicted).f1
    assert summed == pytest.approx(600 / 7) and whole == pytest.approx(400 / 7)


def test_classification_and_qa_metrics_match_direct_computation(ft):
    _, task, _, criterion = build(ft.converted["xnli"], "xlint_classification", "--valid-languages", "en,fr")
    dataset = task.load_dataset("valid")

    class Constant(torch.nn.Module):
        def forward(self, src_tokens, **kwargs):  # predicts label (first token id) % 3
            return torch.nn.functional.one_hot(src_tokens[:, 1] % 3, 3).float(), {}

    stats = validate_like_fairseq(task, criterion, Constant().eval(), dataset, batch_size=7)
    for lang in LANGS:
        pairs = [(record["label"], task.labels[record["premise_tokens"][0] % 3])
                 for example_lang, record in dataset.examples if example_lang == lang]
        assert stats[f"acc_{lang}"] == pytest.approx(accuracy([g for g, _ in pairs], [p for _, p in pairs]))


def test_best_span_decoding_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    starts, ends = torch.randn(4, 12, generator=generator), torch.randn(4, 12, generator=generator)
    allowed_starts = torch.rand(4, 12, generator=generator) > 0.3
    allowed_ends = torch.rand(4, 12, generator=generator) > 0.3
    scores, first, last = best_spans(starts, ends, allowed_starts, allowed_ends, max_answer_length=3)
    for row in range(4):
        candidates = [(starts[row, i] + ends[row, j], i, j) for i in range(12) for j in range(i, min(12, i + 3))
                      if allowed_starts[row, i] and allowed_ends[row, j]]
        best = max(candidates, key=lambda c: c[0])
        assert float(scores[row]) == pytest.approx(float(best[0]))
        assert (int(first[row]), int(last[row])) == (best[1], best[2])


def test_truncate_pair_drops_from_the_longer_side():
    assert truncate_pair([1, 2, 3, 4, 5], [6, 7], 5) == ([1, 2, 3], [6, 7])
    assert truncate_pair([1, 2], [3, 4, 5, 6], 4) == ([1, 2], [3, 4])
    assert truncate_pair([1], [2], 5) == ([1], [2])


# --------------------------------------------------------------------------- settings, routing, parameters


def test_few_shot_moves_m_dev_examples_per_target_into_training(ft):
    def split(seed: str):
        _, task, _, _ = build(ft.converted["pos"], "xlint_tagging", "--train-languages", "en",
                              "--valid-languages", "en,fr", "--few-shot", "5", "--few-shot-seed", seed)
        train = task.load_dataset("train").examples
        valid = task.load_dataset("valid").examples
        return train, valid

    train, valid = split("1")
    fr_dev = read_records(str(ft.converted["pos"]), "fr", "dev")
    en_train = read_records(str(ft.converted["pos"]), "en", "train")
    shots = [record["id"] for lang, record in train if lang == "fr"]
    rest = [record["id"] for lang, record in valid if lang == "fr"]
    assert len(shots) == 5 and sum(lang == "en" for lang, _ in train) == len(en_train)
    assert sorted(shots + rest) == sorted(record["id"] for record in fr_dev) and not set(shots) & set(rest)
    assert sum(lang == "en" for lang, _ in valid) == len(read_records(str(ft.converted["pos"]), "en", "dev"))
    again, _ = split("1")
    assert [r["id"] for lang, r in again if lang == "fr"] == shots  # the same shots for every training seed
    other, _ = split("2")
    assert [r["id"] for lang, r in other if lang == "fr"] != shots


def test_examples_route_through_their_own_language_modules(ft):
    _, task, model, _ = build(ft.converted["pos"], "xlint_tagging", "--valid-languages", "en,fr",
                              model_languages="fr,en")
    dataset = task.load_dataset("valid")
    ids = {lang: {item["lang_id"] for item in dataset.items if item["lang"] == lang} for lang in LANGS}
    assert ids == {"fr": {0}, "en": {1}}
    assert model.languages == ["fr", "en"]

    _, task, _, _ = build(ft.converted["pos"], "xlint_tagging", "--valid-languages", "en,fr", model_languages="en")
    with pytest.raises(ValueError, match="--route-languages fr="):
        task.load_dataset("valid")
    _, task, _, _ = build(ft.converted["pos"], "xlint_tagging", "--valid-languages", "en,fr",
                          "--route-languages", "fr=en", model_languages="en")
    assert {item["lang_id"] for item in task.load_dataset("valid").items} == {0}
    _, task, _, _ = build(ft.converted["pos"], "xlint_tagging", "--valid-languages", "en,fr", model_languages="en",
                          variant="joint")
    assert len(task.load_dataset("valid")) > 0  # no language-specific modules: nothing to route


def test_freeze_language_specific_and_head_learning_rate(ft):
    cfg, task, model, _ = build(ft.converted["xnli"], "xlint_classification", "--freeze-language-specific",
                                "--optimizer", "xlint_adam", "--lr", "1e-4", "--head-lr", "5e-4",
                                "--lr-scheduler", "polynomial_decay", "--total-num-update", "10",
                                "--warmup-updates", "2")
    language_specific = [(n, p) for n, p in model.named_parameters() if ".per_language." in n]
    assert language_specific and not any(p.requires_grad for _, p in language_specific)
    assert all(p.requires_grad for n, p in model.named_parameters() if ".per_language." not in n)
    head = list(model.heads["classification"].parameters())
    assert head and all(getattr(p, "param_group", None) == "head" for p in head)

    from fairseq import optim
    from fairseq.optim import lr_scheduler

    optimizer = optim.build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    scheduler = lr_scheduler.build_lr_scheduler(cfg.lr_scheduler, optimizer)
    head_ids = {id(p) for p in head}
    for update in range(1, 8):
        lr = scheduler.step_update(update)
        groups = {("head" if id(group["params"][0]) in head_ids else "body"): group["lr"]
                  for group in optimizer.param_groups}
        assert groups["body"] == pytest.approx(lr) and groups["head"] == pytest.approx(5 * lr)
        assert optimizer.get_lr() == pytest.approx(lr)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(1 for p in model.parameters()
                                                                      if p.requires_grad)


# --------------------------------------------------------------------------- conversion of official formats


def convert_fixture(ft, tmp_path, command, *args):
    out = tmp_path / f"out-{command}"
    result = CliRunner().invoke(cli, ["data", "convert", command, "--corpus", str(ft.corpus), "--out", str(out),
                                      "--quiet", *args])
    return out, result


@pytest.mark.parametrize("command,spec,extra,reader", [
    ("wikiann", "test={}".format(FIXTURES / "panx-de-dev.tsv"), ["--normalize-as", "de=en"],
     lambda p: tf.read_wikiann(p)),
    ("conll", "en:train={}".format(FIXTURES / "conll2003-iob1.txt"), ["--iob", "repair"],
     lambda p: tf.read_conll(p, iob="repair")),
    ("conllu", "dev={}".format(FIXTURES / "fr_gsd-ud-dev.conllu"), [], lambda p: tf.read_conllu(p)),
])
def test_convert_tagging_formats(ft, tmp_path, command, spec, extra, reader):
    out, result = convert_fixture(ft, tmp_path, command, *extra, spec)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == FORMAT_VERSION and meta["task"] == "tagging"
    expected = reader(Path(spec.split("=", 1)[1]))
    (lang, splits), = meta["splits"].items()
    (split, count), = splits.items()
    assert count == len(expected) and lang == (expected[0].lang or "en")
    records = read_records(str(out), lang, split)
    encoder_lang = meta["normalize_as"].get(lang, lang)
    dictionary = Dictionary.load(str(ft.corpus / "dict.txt"))
    for sentence, record in zip(expected, records):
        assert record["words"] == sentence.tokens and record["tags"] == sentence.tags
        ids = []
        for pieces in encode_words(ft.corpus, encoder_lang, sentence.tokens):
            ids.append([dictionary.index(piece) for piece in pieces] or [dictionary.unk()])
        assert record["word_starts"] == list(np.cumsum([0] + [len(i) for i in ids[:-1]]))
        assert record["tokens"] == [i for word in ids for i in word]
    assert set(meta["labels"]) == {tag for s in expected for tag in s.tags}
    assert (out / "dict.txt").read_bytes() == (ft.corpus / "dict.txt").read_bytes()


def test_convert_xnli_and_multinli(ft, tmp_path):
    out, result = convert_fixture(ft, tmp_path, "xnli", "--languages", "en,fr", "--normalize-as", "de=en",
                                  "en:train={}".format(FIXTURES / "multinli_1.0_train.txt"),
                                  "dev={}".format(FIXTURES / "xnli.dev.tsv"))
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    dev = [e for e in tf.read_nli_tsv(FIXTURES / "xnli.dev.tsv") if e.lang in ("en", "fr")]
    train = tf.read_nli_tsv(FIXTURES / "multinli_1.0_train.txt")
    assert meta["splits"]["en"] == {"train": len(train), "dev": sum(e.lang == "en" for e in dev)}
    assert meta["labels"] == list(tf.NLI_LABELS)
    record = read_records(str(out), "en", "train")[0]
    assert record["premise"] == train[0].premise and record["label"] == train[0].label
    assert record["premise_tokens"] and record["hypothesis_tokens"]


@pytest.mark.parametrize("command,spec,extra,metric", [
    ("squad", "en:dev={}".format(FIXTURES / "squad-v1.1-dev-sample.json"), [], "squad"),
    ("tydiqa", "dev={}".format(FIXTURES / "tydiqa-goldp-dev-sample.json"),
     ["--normalize-as", "ar=en", "--normalize-as", "fi=en", "--normalize-as", "ko=en", "--normalize-as", "sw=en",
      "--normalize-as", "ru=en", "--normalize-as", "bn=en", "--normalize-as", "te=en", "--normalize-as", "id=en"],
     "squad"),
    ("mlqa", "dev={}".format(FIXTURES / "dev-context-de-question-de.json"), ["--normalize-as", "de=en"], "mlqa"),
])
def test_convert_qa_formats_locate_answers(ft, tmp_path, command, spec, extra, metric):
    out, result = convert_fixture(ft, tmp_path, command, *extra, spec)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["qa_metric"] == metric and meta["task"] == "qa"
    path = Path(spec.split("=", 1)[1])
    expected = {e.id: e for e in tf.read_squad_json(path, lang="en" if spec.startswith("en:") else None)}
    located = 0
    for lang, splits in meta["splits"].items():
        for record in read_records(str(out), lang, "dev"):
            example = expected[record["id"]]
            assert example.lang in (lang, None) or lang == "en"
            assert len(record["context_offsets"]) == len(record["context_tokens"])
            assert all(0 <= s < e <= len(record["context"]) for s, e in record["context_offsets"])
            if record["answer_token_span"] is not None:
                first, last = record["answer_token_span"]
                text = record["context"][record["context_offsets"][first][0]: record["context_offsets"][last][1]]
                assert example.answers[0].text in text
                located += 1
    assert sum(c["dev"] for c in meta["splits"].values()) == len(expected)
    assert located >= len(expected) - sum(meta["unlocated_answers"].values()) and located > 0


def test_convert_errors_are_one_line_and_leave_nothing(ft, tmp_path):
    bad = tmp_path / "bad.conll"
    bad.write_text("the\tDET\ncat\n\n", encoding="utf-8")
    out, result = convert_fixture(ft, tmp_path, "conll", "--kind", "pos", f"en:train={bad}")
    assert result.exit_code != 0
    assert f"{bad}:2" in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".out-*"))

    good = ft.files["pos"][("en", "train")]
    out, result = convert_fixture(ft, tmp_path, "conll", "--kind", "pos", f"de:train={good}")
    assert result.exit_code != 0 and "--normalize-as de=" in result.output and not out.exists()
    out, result = convert_fixture(ft, tmp_path, "conll", "--kind", "pos", f"train={good}")
    assert result.exit_code != 0 and "LANG:train=" in result.output
    out, result = convert_fixture(ft, tmp_path, "conll", "--kind", "pos", f"en:train={tmp_path / 'missing'}")
    assert result.exit_code != 0 and "is not a file" in result.output

    out, result = convert_fixture(ft, tmp_path, "conll", "--kind", "pos", f"en:train={good}")
    assert result.exit_code == 0
    before = (out / "meta.json").read_text(encoding="utf-8")
    _, again = convert_fixture(ft, tmp_path, "conll", "--kind", "pos", f"fr:train={good}")
    assert again.exit_code != 0 and "--force" in again.output
    assert (out / "meta.json").read_text(encoding="utf-8") == before
    _, forced = convert_fixture(ft, tmp_path, "conll", "--kind", "pos", "--force", f"fr:train={good}")
    assert forced.exit_code == 0 and list(json.loads((out / "meta.json").read_text())["splits"]) == ["fr"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_finetune_dry_run_composes_the_settings(ft, tmp_path):
    def dry(*args):
        result = CliRunner().invoke(cli, ["finetune", str(ft.converted["pos"]), "--pretrained", str(ft.checkpoint),
                                          "--save-dir", str(tmp_path / "runs"), "--dry-run", *args])
        assert result.exit_code == 0, result.output + repr(result.exception)
        return [line for line in result.output.splitlines() if "fairseq-train" in line]

    lines = dry("--source", "en")
    assert len(lines) == 1
    command = lines[0]
    for expected in ("--task xlint_tagging", "--arch xlm_adapter_tiny", "--language-specific adapter",
                     "--model-languages en,fr", f"--finetune-from-model {ft.checkpoint.resolve()}",
                     "--best-checkpoint-metric f1_en", "--maximize-best-checkpoint-metric", "--max-epoch 10",
                     "--valid-languages en,fr", "--train-languages en", "--lr 2e-05", "--batch-size 32"):
        assert expected in command, expected
    assert "--best-checkpoint-metric f1_fr" in dry("--source", "fr", "--setting", "within")[0]
    assert "--best-checkpoint-metric acc_avg" in dry("--source", "en", "--select", "average", "--metric", "acc")[0]
    few = dry("--source", "en", "--setting", "few-shot", "--few-shot", "5")[0]
    assert "--few-shot 5" in few
    grid = dry("--source", "en", "--grid", "paper", "--seeds", "1,2")
    assert len(grid) == 12 and {c.split("--seed ")[1].split()[0] for c in grid} == {"1", "2"}
    assert dry("--source", "en", "--", "--distributed-world-size", "2")[0].endswith("--distributed-world-size 2")

    result = CliRunner().invoke(cli, ["finetune", str(ft.converted["pos"]), "--pretrained", str(ft.checkpoint),
                                      "--save-dir", str(tmp_path / "r"), "--dry-run", "--source", "de"])
    assert result.exit_code != 0 and "de is not in" in result.output


def test_saved_metrics_with_a_predictions_meter_load_again():
    """A checkpoint saved mid-epoch holds the train meters; fairseq rebuilds them by class name."""
    from fairseq.logging.meters import MetersDict

    from xlint.user_dir.data.finetune_data import PredictionsMeter

    saved = MetersDict()
    saved.add_meter("predictions_en", PredictionsMeter(), 0)
    saved["predictions_en"].update([1, 2])
    loaded = MetersDict()
    loaded.load_state_dict(saved.state_dict())
    assert isinstance(loaded["predictions_en"], PredictionsMeter) and loaded["predictions_en"].items == []
