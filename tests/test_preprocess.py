"""End-to-end and unit tests of ``xlint preprocess`` on a small five-script fixture."""
from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from xlint.cli.commands_preprocess import preprocess
from xlint.preprocess import binarize as binarize_module
from xlint.preprocess import pipeline as pipeline_module
from xlint.preprocess.binarize import binarize_split, build_shared_dictionary
from xlint.preprocess.encode import encode_lines, encode_words
from xlint.preprocess.errors import PreprocessError
from xlint.preprocess.languages import parse_language, parse_languages
from xlint.preprocess.normalize import TextNormalizer
from xlint.preprocess.parallel import transform_lines_to_file
from xlint.preprocess.splits import SPLITS, SplitOptions, split_language
from xlint.preprocess.textio import atomic_text_writer, read_json, read_own_lines

FIXTURES = Path(__file__).parent / "fixtures" / "preprocess"
LANGUAGES = ("en", "ru", "ar", "hi", "te")
#: The five scripts have ~380 character symbols (word-internal and word-final); leave room for merges.
VOCAB_SIZE = 600
SMALL_VOCAB_SIZE = 400


def invoke(*args: str) -> "CliRunner.invoke":
    """Run ``xlint preprocess`` in-process, one worker, no progress output."""
    return CliRunner().invoke(preprocess, [*args, "--workers", "1", "-q"], catch_exceptions=False)


def language_args(languages=LANGUAGES, directory: Path = FIXTURES) -> list[str]:
    return [f"{code}={directory / f'{code}.txt'}" for code in languages]


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_dataset(out: Path, code: str, split: str):
    from fairseq.data import Dictionary, data_utils

    dictionary = Dictionary.load(str(out / "dict.txt"))
    return data_utils.load_indexed_dataset(str(out / code / split), dictionary, dataset_impl="mmap")


@pytest.fixture(scope="module", params=["subword_nmt", "sentencepiece"])
def built(request, tmp_path_factory) -> tuple[Path, dict]:
    """The five-language fixture preprocessed with each subword model kind."""
    out = tmp_path_factory.mktemp(f"out-{request.param}")
    result = invoke("--out", str(out), *language_args(), "--bpe", request.param, "--vocab-size", str(VOCAB_SIZE))
    assert result.exit_code == 0, result.output
    return out, read_json(out / "metadata.json")


# --------------------------------------------------------------------------- end to end


def test_output_layout(built):
    out, metadata = built
    assert (out / "dict.txt").is_file() and (out / "work").is_dir()
    for code in LANGUAGES:
        for split in SPLITS:
            assert (out / code / f"{split}.bin").is_file() and (out / code / f"{split}.idx").is_file()
    expected_bpe = {"subword_nmt": {"codes"}, "sentencepiece": {"spm.model", "spm.vocab"}}[metadata["bpe"]["kind"]]
    assert {path.name for path in (out / "bpe").iterdir()} == expected_bpe
    assert not list(out.rglob(".*partial*")), "temporary files left behind"


def test_metadata_describes_the_build(built):
    out, metadata = built
    assert metadata["languages"] == list(LANGUAGES)
    bpe = metadata["bpe"]
    assert bpe["vocab_size"] == VOCAB_SIZE
    assert bpe["sha256"] == sha256(out / "bpe" / bpe["files"][0])
    assert metadata["dict_sha256"] == sha256(out / "dict.txt")
    assert metadata["seed"] == 1 and metadata["temperature"] == pytest.approx(1 / 0.7)
    probabilities = [entry["probability"] for entry in bpe["sample"]["per_language"].values()]
    assert sum(probabilities) == pytest.approx(1.0)


def test_metadata_counts_equal_dataset_lengths(built):
    out, metadata = built
    for code in LANGUAGES:
        for split in SPLITS:
            dataset = load_dataset(out, code, split)
            recorded = metadata["splits"][code][split]
            assert len(dataset) == recorded["sentences"] > 0
            assert int(np.sum(dataset.sizes)) == recorded["tokens"]


def test_dictionary_is_shared_by_all_scripts(built):
    out, metadata = built
    symbols = [line.split(" ")[0] for line in (out / "dict.txt").read_text(encoding="utf-8").splitlines()]
    for letter in ("e", "д", "ا", "क", "న"):  # Latin, Cyrillic, Arabic, Devanagari, Telugu
        assert any(letter in symbol for symbol in symbols), letter
    for code in LANGUAGES:
        assert metadata["splits"][code]["train"]["unknown"] == 0


def test_splits_are_disjoint_and_dedupe_drops_repeats(built):
    out, metadata = built
    for code in LANGUAGES:
        splits = {split: read_own_lines(out / "work" / code / f"{split}.tok") for split in SPLITS}
        splits = {split: list(lines) for split, lines in splits.items()}
        for first, second in itertools.combinations(SPLITS, 2):
            assert not set(splits[first]) & set(splits[second]), (code, first, second)
        everything = [line for lines in splits.values() for line in lines]
        assert len(everything) == len(set(everything))
    assert metadata["filtering"]["en"]["duplicates_removed"] == 1
    assert metadata["filtering"]["en"]["sources"]["all"]["empty_lines_dropped"] == 1


def test_encode_lines_reproduces_the_training_text(built):
    out, _ = built
    for code in LANGUAGES:
        raw = (FIXTURES / f"{code}.txt").read_text(encoding="utf-8").splitlines()
        encoded = set(encode_lines(out, code, raw))
        for split in SPLITS:
            assert set(read_own_lines(out / "work" / code / f"{split}.bpe")) <= encoded
    assert encode_lines(out, "en", ["", "Hello, world."])[0] == ""
    pieces = encode_words(out, "hi", ["मैं", "स्कूल", "जा", "रहा", "हूँ", "।"])
    assert len(pieces) == 6 and all(pieces)


def test_encode_lines_rejects_a_language_not_preprocessed(built):
    out, _ = built
    with pytest.raises(PreprocessError, match="not preprocessed"):
        encode_lines(out, "fr", ["Bonjour."])


def test_rerun_is_up_to_date_and_rewrites_nothing(built):
    out, metadata = built
    before = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}
    result = CliRunner().invoke(preprocess, ["--out", str(out), *language_args(), "--bpe", metadata["bpe"]["kind"],
                                             "--vocab-size", str(VOCAB_SIZE), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "is up to date" in result.output
    assert before == {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}


def test_mismatched_output_dir_is_refused(built):
    out, metadata = built
    result = invoke("--out", str(out), *language_args(), "--bpe", metadata["bpe"]["kind"], "--vocab-size", "700")
    assert_one_line_error(result, "vocab_size 600 -> 700", "--force")


def test_interrupted_run_resumes_and_force_rebuilds(tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = ["--out", str(out), *language_args(("en", "ru")), "--vocab-size", str(SMALL_VOCAB_SIZE)]

    def crash(*_args, **_kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(pipeline_module, "build_shared_dictionary", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        invoke(*args)
    assert not (out / "dict.txt").exists() and not (out / "metadata.json").exists()
    monkeypatch.undo()

    resumed = CliRunner().invoke(preprocess, [*args, "--workers", "1"])
    assert resumed.exit_code == 0, resumed.output
    assert "learn the subword_nmt model: done before, skipped" in resumed.output
    assert "build the shared dictionary\n" in resumed.output

    changed = invoke(*args[:-1], str(SMALL_VOCAB_SIZE + 50))
    assert changed.exit_code != 0
    forced = invoke(*args[:-1], str(SMALL_VOCAB_SIZE + 50), "--force")
    assert forced.exit_code == 0, forced.output
    assert read_json(out / "metadata.json")["bpe"]["vocab_size"] == SMALL_VOCAB_SIZE + 50


def test_same_seed_gives_identical_output(tmp_path):
    def build(name: str, seed: str) -> Path:
        out = tmp_path / name
        result = invoke("--out", str(out), *language_args(("en", "hi")), "--vocab-size", str(SMALL_VOCAB_SIZE),
                        "--seed", seed)
        assert result.exit_code == 0, result.output
        return out

    first, second, other_seed = build("a", "7"), build("b", "7"), build("c", "8")
    for relative in ("dict.txt", "bpe/codes", "en/train.bin", "en/valid.idx", "hi/metadev.bin"):
        assert sha256(first / relative) == sha256(second / relative), relative
    heldout = [f"work/en/{split}.tok" for split in ("valid", "test", "metadev")]
    assert [sha256(first / path) for path in heldout] != [sha256(other_seed / path) for path in heldout]


def test_user_split_files_and_subsample(tmp_path):
    lines = [f"Sentence number {number} is here." for number in range(60)]
    split_dir = tmp_path / "splits" / "en"
    split_dir.mkdir(parents=True)
    (split_dir / "train.txt").write_text("\n".join(lines[:50] + lines[55:57]) + "\n", encoding="utf-8")
    (split_dir / "valid.txt").write_text("\n".join(lines[50:55]) + "\n", encoding="utf-8")
    (split_dir / "test.txt").write_text("\n".join(lines[55:60]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = invoke("--out", str(out), "--split-dir", str(tmp_path / "splits"), "en", f"ru={FIXTURES / 'ru.txt'}",
                    "--metadev-size", "4", "--subsample", "en=20", "--vocab-size", str(SMALL_VOCAB_SIZE))
    assert result.exit_code == 0, result.output
    counts = {split: entry["sentences"] for split, entry in
              read_json(out / "metadata.json")["splits"]["en"].items()}
    # the two test sentences repeated in train were dropped from train before carving metadev
    assert counts == {"train": 20, "valid": 5, "test": 5, "metadev": 4}
    assert read_json(out / "metadata.json")["filtering"]["en"]["train_before_subsample"] == 46


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def text_dir(tmp_path) -> Path:
    for code in ("en", "ru"):
        (tmp_path / f"{code}.txt").write_bytes((FIXTURES / f"{code}.txt").read_bytes())
    return tmp_path


def test_missing_file(text_dir):
    result = invoke("--out", str(text_dir / "out"), f"en={text_dir / 'nope.txt'}")
    assert_one_line_error(result, "nope.txt", "does not exist")


def test_empty_file(text_dir):
    (text_dir / "empty.txt").write_bytes(b"")
    result = invoke("--out", str(text_dir / "out"), f"en={text_dir / 'en.txt'}", f"ru={text_dir / 'empty.txt'}")
    assert_one_line_error(result, "empty.txt", "empty")


def test_blank_file(text_dir):
    (text_dir / "blank.txt").write_bytes(b"\n  \n\t\n")
    result = invoke("--out", str(text_dir / "out"), f"en={text_dir / 'en.txt'}", f"ru={text_dir / 'blank.txt'}")
    assert_one_line_error(result, "blank.txt", "no text")


def test_invalid_utf8_names_file_and_line(text_dir):
    (text_dir / "bad.txt").write_bytes("Первая строка.\nВторая строка.\n".encode() + b"Bad \xff\xfe byte.\n")
    result = invoke("--out", str(text_dir / "out"), f"en={text_dir / 'en.txt'}", f"ru={text_dir / 'bad.txt'}")
    assert_one_line_error(result, f"{text_dir / 'bad.txt'}:3:", "invalid UTF-8")


def test_byte_order_mark_is_stripped(text_dir):
    (text_dir / "en.txt").write_bytes(b"\xef\xbb\xbf" + (FIXTURES / "en.txt").read_bytes())
    out = text_dir / "out"
    result = invoke("--out", str(out), *language_args(("en", "ru"), text_dir), "--vocab-size", str(SMALL_VOCAB_SIZE))
    assert result.exit_code == 0, result.output
    assert "\ufeff" not in (out / "dict.txt").read_text(encoding="utf-8")
    first_line = encode_lines(out, "en", ["\ufeffThe weather was cold."])[0]
    assert not first_line.startswith("\ufeff") and first_line.startswith("The")


@pytest.mark.parametrize("code, fragment", [("xx", "unknown language code 'xx'"),
                                            ("english", "malformed language code"),
                                            ("fr-l", "malformed language code")])
def test_bad_language_code(text_dir, code, fragment):
    result = invoke("--out", str(text_dir / "out"), f"{code}={text_dir / 'en.txt'}")
    assert_one_line_error(result, fragment)


def test_duplicate_language_and_unknown_subsample_language(text_dir):
    duplicate = invoke("--out", str(text_dir / "out"), f"en={text_dir / 'en.txt'}", f"EN={text_dir / 'ru.txt'}")
    assert_one_line_error(duplicate, "more than once")
    subsample = invoke("--out", str(text_dir / "out"), *language_args(("en", "ru"), text_dir), "--subsample", "fr=5")
    assert_one_line_error(subsample, "--subsample names fr")


def test_too_little_text_for_the_held_out_splits(text_dir):
    (text_dir / "tiny.txt").write_text("One.\nTwo.\nThree.\n", encoding="utf-8")
    result = invoke("--out", str(text_dir / "out"), f"en={text_dir / 'tiny.txt'}")
    assert_one_line_error(result, "too few for a train split")


def test_vocabulary_below_the_character_count(text_dir):
    result = invoke("--out", str(text_dir / "out"), *language_args(("en", "ru"), text_dir), "--vocab-size", "50")
    assert_one_line_error(result, "--vocab-size 50", "character symbols")


def test_foreign_files_in_the_output_dir(text_dir):
    (text_dir / "out").mkdir()
    (text_dir / "out" / "dict.txt").write_text("a 1\n", encoding="utf-8")
    result = invoke("--out", str(text_dir / "out"), *language_args(("en", "ru"), text_dir))
    assert_one_line_error(result, "unknown origin", "--force")


def test_help_describes_the_layout():
    result = CliRunner().invoke(preprocess, ["--help"])
    assert result.exit_code == 0
    assert "metadev" in result.output and "--subsample" in result.output and "dict.txt" in result.output


# --------------------------------------------------------------------------- units


def test_language_codes():
    assert parse_language("EN").code == "en"
    french = parse_language("fra")
    assert (french.iso639_3, french.moses_code, french.name) == ("fra", "fr", "French")
    limited = parse_language("fr_l")
    assert (limited.base, limited.variant, limited.moses_code) == ("fr", "l", "fr")
    ancient_greek = parse_language("grc")
    assert ancient_greek.moses_code == "grc" and "Greek" in ancient_greek.name
    assert [language.code for language in parse_languages(["sw", "tr", "te"])] == ["sw", "tr", "te"]
    with pytest.raises(PreprocessError):
        parse_language("zz")


@pytest.mark.parametrize("moses_code, raw, expected", [
    ("en", "\ufeff“Hello,” she said — ﬁne！", '" Hello , " she said - fine !'),
    ("ar", "ذهبتُ إلى المدرسة، هل تعرف؟", "ذهبتُ إلى المدرسة ، هل تعرف ؟"),
    ("ar", "\u200fﻻ\u00a0شيء", "لا شيء"),
    ("hi", "क्या तुम्हें पता है?", "क्या तुम्हें पता है ?"),
    ("te", "స్టేషన్\u200cలో", "స్టేషన్\u200cలో"),
    ("grc", "ἐν ἀρχῇ ἦν ὁ λόγος,\x07 καὶ", "ἐν ἀρχῇ ἦν ὁ λόγος , καὶ"),
])
def test_normalizer(moses_code, raw, expected):
    assert TextNormalizer(moses_code)(raw) == expected


def test_split_language_is_deterministic_and_shares_heldout_across_variants(tmp_path):
    source = tmp_path / "all.tok"
    source.write_text("".join(f"line {number}\n" for number in range(200)), encoding="utf-8")

    def split(name: str, seed: int, subsample: int | None = None, code: str = "fr") -> dict[str, list[str]]:
        options = SplitOptions(heldout_sizes={"valid": 10, "test": 10, "metadev": 10}, dedupe=True, seed=seed,
                               split_seed_key="fr", subsample=subsample, subsample_seed_key=code)
        split_language({"all": source}, tmp_path / name, options, code)
        return {part: list(read_own_lines(tmp_path / name / f"{part}.tok")) for part in SPLITS}

    first, again, other = split("a", 1), split("b", 1), split("c", 2)
    assert first == again and first != other
    assert [len(first[part]) for part in SPLITS] == [170, 10, 10, 10]
    limited = split("d", 1, subsample=50, code="fr_l")
    assert len(limited["train"]) == 50 and set(limited["train"]) <= set(first["train"])
    assert all(limited[part] == first[part] for part in ("valid", "test", "metadev"))


def test_parallel_transform_keeps_order(tmp_path):
    lines = [f"line {number}" if number % 7 else "" for number in range(5000)]
    counts = transform_lines_to_file(lines, str.upper, tmp_path / "out.txt", workers=2, progress=False)
    assert list(read_own_lines(tmp_path / "out.txt")) == [line.upper() for line in lines if line]
    assert (counts.lines_in, counts.lines_out) == (5000, sum(1 for line in lines if line))


def test_binarization_matches_fairseqs_own_binarizer(tmp_path, monkeypatch):
    from fairseq.binarizer import FileBinarizer, VocabularyDatasetBinarizer
    from fairseq.data import Dictionary

    train, text = tmp_path / "train.bpe", tmp_path / "text.bpe"
    train.write_text("a b@@ c d0 d1\n", encoding="utf-8")
    text.write_text("".join(f"a b@@ c d{number % 5}\n" for number in range(300)), encoding="utf-8")
    build_shared_dictionary([train], tmp_path / "dict.txt")
    reference = FileBinarizer.multiprocess_dataset(
        str(text), "mmap", VocabularyDatasetBinarizer(Dictionary.load(str(tmp_path / "dict.txt"))),
        str(tmp_path / "reference"), vocab_size=None, num_workers=1,
    )
    single = binarize_split(text, tmp_path / "dict.txt", tmp_path / "single", workers=1)
    monkeypatch.setattr(binarize_module, "_MIN_BYTES_PER_WORKER", 1)
    multi = binarize_split(text, tmp_path / "dict.txt", tmp_path / "multi", workers=3)
    expected = {"sentences": 300, "tokens": 1500, "unknown": 180}
    assert single == multi == expected
    assert (reference.num_seq, reference.num_tok, reference.num_replaced) == tuple(expected.values())
    reference_items = [item.tolist() for item in load_items(tmp_path / "reference")]
    assert reference_items == [item.tolist() for item in load_items(tmp_path / "single")]
    assert reference_items == [item.tolist() for item in load_items(tmp_path / "multi")]
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def load_items(prefix: Path) -> list:
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    dataset = MMapIndexedDataset(str(prefix))
    return [dataset[index] for index in range(len(dataset))]


def test_atomic_writer_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "file.txt"
    with pytest.raises(RuntimeError):
        with atomic_text_writer(target) as handle:
            handle.write("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
