"""XLM-R releases (fairseq ``roberta`` checkpoints) in xlint: conversion, fine-tuning, evaluation.

The release is the tiny one of :mod:`xlmr_support` (official layout, trained by fairseq's own
``masked_lm`` task); fairseq's ``XLMRModel`` hub is the independent reference for loading and
tokenisation.  The fast tests need no release.
"""
from __future__ import annotations

import argparse
import json
import shutil
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

import xlint.user_dir  # noqa: F401  (registers xlint's components, allow-lists checkpoint globals)
from fairseq.data import Dictionary

from xlint.cli.main import cli
from xlint.user_dir.models.xlint_roberta import (
    BERT_INIT_STD,
    XlintRobertaModel,
    seeded_bert_init_,
    state_mismatch,
    xlint_roberta,
)

pytest.register_assert_rewrite("xlmr_support")
from xlmr_support import POS_FIXTURE, SCRIPT_FILES, XNLI_FIXTURE  # noqa: E402

#: the session fixture ``tiny_xlmr`` (the release) lives in xlmr_support
pytest_plugins = ["xlmr_support"]

COMMON = ("--cpu", "--cpu-threads", "1", "--quiet")


# --------------------------------------------------------------------------- fast: the model


def tiny_roberta(seed: int = 0) -> XlintRobertaModel:
    torch.manual_seed(seed)
    d = Dictionary()
    for i in range(10):
        d.add_symbol(f"w{i}")
    d.add_symbol("<mask>")
    args = argparse.Namespace(encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32,
                              encoder_attention_heads=2, max_positions=16, dropout=0.0)
    xlint_roberta(args)
    return XlintRobertaModel.build_model(args, SimpleNamespace(source_dictionary=d)).eval()


def test_seeded_head_init_depends_on_the_seed_only():
    first, second, other = torch.nn.Linear(64, 300), torch.nn.Linear(64, 300), torch.nn.Linear(64, 300)
    torch.manual_seed(1)
    seeded_bert_init_(first, 7)
    torch.manual_seed(2)  # the global generator does not matter
    seeded_bert_init_(second, 7)
    seeded_bert_init_(other, 8)
    assert torch.equal(first.weight, second.weight) and not torch.equal(first.weight, other.weight)
    assert torch.count_nonzero(first.bias) == 0
    weight = first.weight.detach()
    assert abs(float(weight.mean())) < 0.002 and float(weight.std()) == pytest.approx(BERT_INIT_STD,
                                                                                                  rel=0.03)
    model_a, model_b = tiny_roberta(seed=0), tiny_roberta(seed=5)
    model_a.register_head("tagging", "token", 4, seed=3)
    model_b.register_head("tagging", "token", 4, seed=3)
    assert torch.equal(model_a.heads["tagging"].out_proj.weight, model_b.heads["tagging"].out_proj.weight)


def test_heads_forward_and_no_language_modules():
    model = tiny_roberta()
    model.register_head("classification", "sentence", 3, seed=1)
    toks = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]])
    logits, _ = model(toks, src_lengths=torch.tensor([5, 3]), src_lang_id=torch.tensor([0, 1]),
                      head="classification")
    assert logits.shape == (2, 3)
    features, _ = model(toks, features_only=True)
    assert features.shape == (2, 5, 16)
    assert model.languages == [] and all(model.language_of_parameter(n) is None for n, _ in model.named_parameters())
    with pytest.raises(ValueError, match="another shape"):
        model.register_head("classification", "sentence", 4)
    with pytest.raises(KeyError):
        list(model.language_parameters("en"))


def test_strict_state_checks_name_the_key():
    expected = {"a": torch.Size([2]), "b": torch.Size([3]), "heads.x.out_proj.weight": torch.Size([1])}
    assert state_mismatch(expected, {"a": torch.Size([2]), "b": torch.Size([3])}) is None
    assert state_mismatch(expected, {"a": torch.Size([2])}) == "missing key b"
    assert state_mismatch(expected, {"a": torch.Size([2]), "b": torch.Size([3]), "c": torch.Size([1]),
                                     "d": torch.Size([1])}) == "unexpected key c (and 1 more)"
    assert "key b has shape [4]" in state_mismatch(expected, {"a": torch.Size([2]), "b": torch.Size([4])})
    model = tiny_roberta()
    state = dict(model.state_dict())
    state["classification_heads.mnli.dense.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="classification_heads.mnli.dense.weight"):
        model.upgrade_state_dict_named(state, "")


# --------------------------------------------------------------------------- fast: the encoder


@pytest.fixture(scope="module")
def spm_release(tmp_path_factory) -> Path:
    """A release folder with a sentencepiece model and dictionary (no checkpoint: not loaded)."""
    import sentencepiece as spm

    from xlmr_support import fixture_sentences

    root = tmp_path_factory.mktemp("spm")
    text = root / "text.txt"
    text.write_text("\n".join(fixture_sentences()) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(root / "sp"), vocab_size=300,
                                   character_coverage=1.0, num_threads=1, minloglevel=2)
    release = root / "release"
    release.mkdir()
    shutil.copyfile(root / "sp.model", release / "sentencepiece.bpe.model")
    processor = spm.SentencePieceProcessor(model_file=str(release / "sentencepiece.bpe.model"))
    size = processor.get_piece_size()
    (release / "dict.txt").write_text("".join(f"{processor.id_to_piece(i)} 1\n" for i in range(3, size)),
                                      encoding="utf-8")
    (release / "model.pt").write_bytes(b"")
    return release


def test_context_offsets_point_at_the_original_characters(spm_release):
    from xlint.preprocess.encoders import SentencePieceEncoder

    encoder = SentencePieceEncoder(spm_release, check_model=False)
    # NFKC folds the full-width H and the lam-alef ligature; double spaces collapse; a tab; unknown ☃
    context = "\uff28ello  world\tПривет \ufefb मेरा ☃ नाम"
    ids, spans = encoder.context("xx", context)
    pieces = encoder.pieces(context)
    assert ids == encoder.line("xx", context) and len(spans) == len(pieces)
    for piece, (start, end) in zip(pieces, spans):
        surface = piece.replace("\u2581", "")
        original = context[start:end]
        assert original == original.strip() and (surface == "" or original)
        if surface:
            assert surface in unicodedata.normalize("NFKC", original), (piece, original)
    assert context[spans[0][0]] == "\uff28"  # the first piece starts at the full-width H, not at its NFKC form
    starts = [s for s, _ in spans]
    assert starts == sorted(starts)
    words = encoder.word("xx", "\u200b")  # encodes to nothing
    assert words[1] == [encoder.dictionary.unk()]


def test_a_release_without_its_sentencepiece_model_is_refused(spm_release, tmp_path):
    from xlint.preprocess.encoders import EncoderError, SentencePieceEncoder

    broken = tmp_path / "broken"
    shutil.copytree(spm_release, broken)
    (broken / "sentencepiece.bpe.model").unlink()
    with pytest.raises(EncoderError, match="sentencepiece.bpe.model is missing"):
        SentencePieceEncoder(broken, check_model=False)


def test_convert_takes_exactly_one_encoding_and_no_normaliser_borrowing(spm_release, tmp_path):
    out = tmp_path / "out"
    args = ("data", "convert", "conllu", "--out", str(out), "-q", f"fr:train={POS_FIXTURE}")
    assert "exactly one of --corpus" in refused(*args)
    assert "exactly one of --corpus" in refused(*args, "--corpus", str(tmp_path), "--encoder", str(spm_release))
    assert "nothing to borrow" in refused(*args, "--encoder", str(spm_release), "--normalize-as", "fr=en")
    assert not out.exists()


# --------------------------------------------------------------------------- slow: the tiny release

slow = pytest.mark.slow
MULTILINGUAL = {lang: [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:6]
                for lang, path in SCRIPT_FILES.items()}


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output[-4000:] + repr(result.exception)
    return result.output


def refused(*args: str) -> str:
    """The one-line error of a refused command."""
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.fixture(scope="module")
def hub(tiny_xlmr):
    from fairseq.models.roberta import XLMRModel

    return XLMRModel.from_pretrained(str(tiny_xlmr.release), checkpoint_file="model.pt").eval()


@pytest.fixture(scope="module")
def converted(tiny_xlmr, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("xlmr_data")
    pos, nli = root / "pos", root / "nli"
    release = str(tiny_xlmr.release)
    invoke("data", "convert", "conllu", "--encoder", release, "--out", str(pos), "-q",
           *(f"fr:{split}={POS_FIXTURE}" for split in ("train", "dev", "test")))
    invoke("data", "convert", "xnli", "--encoder", release, "--out", str(nli), "-q",
           *(f"en:{split}={XNLI_FIXTURE}" for split in ("train", "dev", "test")),
           f"de:dev={XNLI_FIXTURE}", f"de:test={XNLI_FIXTURE}")
    # a second language with enough examples for the few-shot and bilingual settings
    rows = XNLI_FIXTURE.read_text(encoding="utf-8").splitlines()
    german = root / "xnli.de.tsv"
    german.write_text("\n".join([rows[0]] + ["de\t" + row.split("\t", 1)[1] for row in rows[1:]] * 2) + "\n",
                      encoding="utf-8")
    pair = root / "pair"
    invoke("data", "convert", "xnli", "--encoder", release, "--out", str(pair), "-q",
           *(f"{lang}:{split}={path}" for lang, path in (("en", XNLI_FIXTURE), ("de", german))
             for split in ("train", "dev", "test")))
    return {"pos": pos, "nli": nli, "pair": pair}


@slow
def test_the_release_loads_in_fairseqs_hub_and_encodes_like_it(tiny_xlmr, hub):
    from xlint.preprocess.encoders import SentencePieceEncoder

    encoder = SentencePieceEncoder(tiny_xlmr.release)
    assert len(hub.task.source_dictionary) == len(encoder.dictionary) + 1  # + <mask>
    for lang, lines in MULTILINGUAL.items():
        for line in lines:
            assert [0] + encoder.line(lang, line) + [2] == hub.encode(line).tolist(), (lang, line)
            for word in line.split():  # a word on its own: XTREME's first-subword alignment
                assert encoder.word(lang, word)[1] == hub.encode(word).tolist()[1:-1], (lang, word)
    counts = [len(encoder.line(lang, " ".join(lines))) for lang, lines in MULTILINGUAL.items()]
    assert all(count > 0 for count in counts)
    unknown = encoder.line("en", "\u2603")  # a character the pieces lack: <unk>, as fairseq's
    assert encoder.dictionary.unk() in unknown and [0] + unknown + [2] == hub.encode("\u2603").tolist()


def load_like_the_trainer(command):
    """Build the task and model of a fairseq-train command line and load its --finetune-from-model
    exactly as fairseq's trainer does (load_checkpoint_to_cpu, then a strict load_state_dict)."""
    from fairseq import checkpoint_utils, tasks

    from xlint.user_dir.tasks.finetune_base import parse_train_args

    cfg = parse_train_args(command[1:])
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    state = checkpoint_utils.load_checkpoint_to_cpu(cfg.checkpoint.finetune_from_model)
    model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
    return task, model


@slow
def test_pos_within_language_fine_tuning_from_the_release(tiny_xlmr, converted, tmp_path):
    from xlint.cli.finetune_plan import FinetuneSpec, plan_runs

    save = tmp_path / "pos"
    args = ("--pretrained", str(tiny_xlmr.release), "--setting", "within", "--source", "fr", "--epochs", "2",
            "--batch-size", "2", "--lr", "2e-3", "--seeds", "3")
    # the plan: xlint_roberta with the release's own options, no language routing
    runs, info = plan_runs(FinetuneSpec(data=converted["pos"], pretrained=tiny_xlmr.release, save_dir=save,
                                        source="fr", setting="within", epochs=2, batch_sizes=[2], lrs=[2e-3],
                                        seeds=[3], cpu=True))
    command = runs[0].command
    assert info["family"] == "roberta" and command[command.index("--arch") + 1] == "xlint_roberta"
    for flag, value in (("--encoder-layers", "2"), ("--encoder-embed-dim", "32"), ("--max-positions", "64")):
        assert command[command.index(flag) + 1] == value
    assert "--layernorm-embedding" in command and "--pair-separators" not in command

    # fairseq's loading of the release: every encoder weight equals the checkpoint's, bit for bit
    raw = torch.load(tiny_xlmr.model, map_location="cpu", weights_only=False)["model"]
    task, model = load_like_the_trainer(command)
    loaded = model.state_dict()
    assert set(loaded) - set(raw) == {k for k in loaded if k.startswith("heads.")} != set()
    for key, value in raw.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key
    assert task.lang_id("fr") == 0 and model.FAMILY == "roberta"

    results = json.loads(_finetune(converted["pos"], save, *args))
    scores = results["test"]["per_seed"]["3"]["scores"]["fr"]
    assert set(scores) == {"acc", "f1"} and results["family"] == "roberta"
    best = save / "bs2-lr0.002" / "seed3" / "checkpoint_best.pt"
    out = tmp_path / "eval"
    invoke("evaluate", str(best), "--out", str(out), "--cpu", "--quiet")
    evaluation = json.loads(out.with_name("eval.json").read_text(encoding="utf-8"))
    assert evaluation["scores"] == results["test"]["per_seed"]["3"]["scores"] and evaluation["family"] == "roberta"

    # what fine-tuning never touched is still the release's, bit for bit: the MLM head and the
    # embeddings of pieces absent from the data; the pieces of the data did move
    tuned = torch.load(best, map_location="cpu", weights_only=False)["model"]
    for key in [k for k in raw if k.startswith("encoder.lm_head.") and k != "encoder.lm_head.weight"]:
        assert torch.equal(tuned[key], raw[key]), key
    used = {t for record in map(json.loads, (converted["pos"] / "fr" / "train.jsonl").read_text().splitlines())
            for t in record["tokens"]} | {0, 2}
    embed = "encoder.sentence_encoder.embed_tokens.weight"
    unused = [row for row in range(raw[embed].shape[0]) if row not in used and row != 1]
    assert torch.equal(tuned[embed][unused], raw[embed][unused])
    assert not torch.equal(tuned[embed][sorted(used)], raw[embed][sorted(used)])


def _finetune(data: Path, save: Path, *args: str) -> str:
    invoke("finetune", str(data), "--save-dir", str(save), *COMMON, *args)
    return (save / "results.json").read_text(encoding="utf-8")


@slow
def test_xnli_zero_shot_with_robertas_pair_encoding(tiny_xlmr, converted, hub, tmp_path):
    from xlint.cli.finetune_plan import FinetuneSpec, plan_runs
    from xlint.preprocess.task_formats import read_nli_tsv

    save = tmp_path / "nli"
    runs, _ = plan_runs(FinetuneSpec(data=converted["nli"], pretrained=tiny_xlmr.model, save_dir=save,
                                     source="en", cpu=True, epochs=1))
    command = runs[0].command
    assert command[command.index("--pair-separators") + 1] == "2"
    task, _ = load_like_the_trainer(command)
    dataset = task.load_dataset("valid")
    examples = read_nli_tsv(XNLI_FIXTURE)
    by_text = {(e.premise, e.hypothesis): e for e in examples}
    assert len(dataset.items) == len(dataset.examples) == 3  # en 2, de 1
    for item, (lang, record) in zip(dataset.items, dataset.examples):
        example = by_text[(record["premise"], record["hypothesis"])]
        assert item["tokens"].tolist() == hub.encode(example.premise, example.hypothesis).tolist()

    results = json.loads(_finetune(converted["nli"], save, "--pretrained", str(tiny_xlmr.model), "--source", "en",
                                   "--epochs", "2", "--batch-size", "2", "--lr", "1e-3", "--head-lr", "1e-3"))
    assert results["selection"]["metric"] == "acc_en" and results["test_languages"] == ["en", "de"]
    assert set(results["test"]["per_seed"]["1"]["scores"]) == {"en", "de"}


@slow
@pytest.mark.parametrize("setting", ["few-shot", "bilingual"])
def test_few_shot_and_bilingual_settings_plan_and_load(tiny_xlmr, converted, tmp_path, setting):
    from xlint.cli.finetune_plan import FinetuneSpec, plan_runs

    spec = FinetuneSpec(data=converted["pair"], pretrained=tiny_xlmr.release, save_dir=tmp_path, source="en",
                        setting=setting, targets=["de"], few_shot=2 if setting == "few-shot" else 0, cpu=True,
                        epochs=1, batch_sizes=[2])
    runs, info = plan_runs(spec)
    task, _ = load_like_the_trainer(runs[0].command)
    train = task.load_dataset("train")
    counts = {lang: sum(1 for example_lang, _ in train.examples if example_lang == lang) for lang in ("en", "de")}
    assert counts == ({"en": 2, "de": 2} if setting == "few-shot" else {"en": 2, "de": 6})
    assert info["train_languages"] == (["en"] if setting == "few-shot" else ["en", "de"])
    # the schedule's length, counted with the model built on the meta device: one update per 2 examples
    assert info["train_updates"] == {"2": sum(counts.values()) // 2}
    valid = task.load_dataset("valid")
    assert sum(1 for lang, _ in valid.examples if lang == "de") == (4 if setting == "few-shot" else 6)


@slow
def test_bad_releases_and_options_are_refused_in_one_line(tiny_xlmr, converted, tmp_path):
    release = tiny_xlmr.release
    wrong_dict = tmp_path / "wrong-dict"
    shutil.copytree(release, wrong_dict)
    with open(wrong_dict / "dict.txt", "a", encoding="utf-8") as handle:
        handle.write("\u2581extra 1\n")
    no_spm = tmp_path / "no-spm"
    shutil.copytree(release, no_spm)
    (no_spm / "sentencepiece.bpe.model").unlink()
    convert = ("data", "convert", "conllu", "--out", str(tmp_path / "out"), "-q", f"fr:train={POS_FIXTURE}")
    assert "gives 503 embeddings" in refused(*convert, "--encoder", str(wrong_dict)) and \
        "has 502" in refused(*convert, "--encoder", str(wrong_dict))
    assert "sentencepiece.bpe.model is missing" in refused(*convert, "--encoder", str(no_spm))
    assert not (tmp_path / "out").exists()

    finetune = ("finetune", str(converted["pos"]), "--save-dir", str(tmp_path / "run"), "--source", "fr",
                "--setting", "within", "--dry-run", *COMMON)
    assert "gives 503 embeddings" in refused(*finetune, "--pretrained", str(wrong_dict))
    assert "sentencepiece.bpe.model is missing" in refused(*finetune, "--pretrained", str(no_spm / "model.pt"))
    line = refused(*finetune, "--pretrained", str(release), "--freeze-language-specific")
    assert "no language-specific modules" in line
    assert "no language-specific modules" in refused(*finetune, "--pretrained", str(release),
                                                     "--route-languages", "fr=en")

    state = torch.load(tiny_xlmr.model, map_location="cpu", weights_only=False)
    for name, change, expected in (
            ("extra-key", lambda m: m.__setitem__("encoder.sentence_encoder.layers.2.fc1.weight", torch.zeros(1)),
             "unexpected key encoder.sentence_encoder.layers.2.fc1.weight"),
            ("missing-key", lambda m: m.pop("encoder.sentence_encoder.layers.1.fc2.bias"),
             "missing key encoder.sentence_encoder.layers.1.fc2.bias")):
        broken = tmp_path / name
        shutil.copytree(release, broken)
        model = dict(state["model"])
        change(model)
        torch.save({**state, "model": model}, broken / "model.pt")
        assert expected in refused(*finetune, "--pretrained", str(broken))
    assert not (tmp_path / "run").exists()
    assert "Error" not in invoke(*finetune, "--pretrained", str(release))  # the release itself is fine


@slow
def test_a_2019_style_release_reads_the_same(tiny_xlmr, converted, tmp_path):
    """The official xlmr.base/large model.pt hold ``args`` (a Namespace) and ``decoder.*`` keys, in
    torch's pre-zip format."""
    from xlint.cli.finetune_inputs import read_pretrained

    state = torch.load(tiny_xlmr.model, map_location="cpu", weights_only=False)
    legacy = tmp_path / "legacy"
    shutil.copytree(tiny_xlmr.release, legacy)
    args = argparse.Namespace(**vars(state["cfg"]["model"]))
    args.arch = "roberta_base"
    model = {("decoder." + k[len("encoder."):] if k.startswith("encoder.") else k): v
             for k, v in state["model"].items() if not k.endswith(".version")}
    torch.save({"args": args, "model": model, "optimizer_history": state["optimizer_history"],
                "extra_state": state["extra_state"]}, legacy / "model.pt",
               _use_new_zipfile_serialization=False)  # 2019's torch wrote no zip archive: no mmap
    new, old = read_pretrained(tiny_xlmr.release), read_pretrained(legacy)
    assert old.family == new.family == "roberta" and old.saved_arch == "roberta_base"
    assert old.model_options == new.model_options and old.embedding_rows == new.embedding_rows == 502

    # and fairseq's trainer loads it into the same weights, bit for bit
    from xlint.cli.finetune_plan import FinetuneSpec, plan_runs

    loaded = {}
    for release in (tiny_xlmr.release, legacy):
        runs, _ = plan_runs(FinetuneSpec(data=converted["pos"], pretrained=release, save_dir=tmp_path / "run",
                                         source="fr", setting="within", epochs=1, cpu=True))
        loaded[release] = load_like_the_trainer(runs[0].command)[1].state_dict()
    differ = [key for key, value in loaded[tiny_xlmr.release].items()
              if not key.startswith("heads.") and not torch.equal(value, loaded[legacy][key])]
    assert differ == ["encoder.sentence_encoder.version"]  # fairseq's state-format marker, not a weight
