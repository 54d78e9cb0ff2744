"""Tests of the pinned demo data: source readers, tag maps, splits, caching, errors, CLI.

Offline tests use small fixtures in the exact source formats (rows copied from the
pinned wheels) packed into fake wheels. One test downloads the real wheels; it is
skipped when ``XLINT_OFFLINE=1``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from xlint.cli.commands_data import data
from xlint.preprocess import demo_data, demo_sources
from xlint.preprocess.demo_data import (
    BIBLE_ALIGNMENTS,
    GREEK_TAG_MAP,
    HELD_OUT_SPLITS,
    POS_LANGUAGES,
    SHARED_TAGS,
    SPLITS,
    TURKISH_TAG_MAP,
    TURKISH_TREEBANKS,
    ChecksumMismatchError,
    DataFormatError,
    DownloadError,
    Sentence,
    WheelPin,
    assign_splits,
    fetch_demo_data,
    match_key,
    read_bsb,
    read_conll,
    read_sblgnt,
    read_turkish_conllu,
    resolve_cache_dir,
    tag_sentence,
    write_conll,
)

FIXTURES = Path(__file__).parent / "fixtures" / "demo_data"
OFFLINE = os.environ.get("XLINT_OFFLINE") == "1"

#: wheel member -> fixture file standing in for it
FIXTURE_MEMBERS = {
    BIBLE_ALIGNMENTS.name: {
        "data/sources/SBLGNT.tsv": "SBLGNT.tsv",
        "data/eng/targets/BSB/ot_BSB.tsv": "ot_BSB.tsv",
        "data/eng/targets/BSB/nt_BSB.tsv": "nt_BSB.tsv",
        "data/eng/alignments/BSB/SBLGNT-BSB-manual.json": "SBLGNT-BSB-manual.json",
    },
    TURKISH_TREEBANKS.name: {"data/web.conllu": "tr.conllu", "data/wiki.conllu": "tr.conllu"},
}


def _conllu_texts(path: Path) -> list[str]:
    """The ``# text = ...`` comments of a CoNLL-U file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("=", 1)[1].strip() for line in lines if line.startswith("# text")]


def _fake_wheel(folder: Path, pin: WheelPin) -> Path:
    """Zip the fixtures under the pin's member names, like the real wheel lays them out."""
    wheel = folder / f"{pin.name.replace('-', '_')}-{pin.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for member, fixture in FIXTURE_MEMBERS[pin.name].items():
            text = (FIXTURES / fixture).read_text(encoding="utf-8")
            if member == "data/wiki.conllu":
                text = text.replace("# sent_id = tr-", "# sent_id = wiki-tr-")  # ids must be unique
            archive.writestr(member, text)
        archive.writestr("LICENSE.md", "fixture")
    return wheel


class FakeIndex:
    """Fake wheels with matching pins, and a downloader that counts its calls."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.wheels: dict[str, Path] = {}
        self.pins: list[WheelPin] = []
        for pin in (BIBLE_ALIGNMENTS, TURKISH_TREEBANKS):
            wheel = _fake_wheel(folder, pin)
            self.wheels[pin.name] = wheel
            self.pins.append(dataclasses.replace(pin, sha256=hashlib.sha256(wheel.read_bytes()).hexdigest()))
        self.calls: list[str] = []

    def download(self, pin: WheelPin, dest: Path) -> Path:
        self.calls.append(pin.name)
        return Path(shutil.copy(self.wheels[pin.name], dest))


@pytest.fixture()
def fake_index(tmp_path: Path) -> FakeIndex:
    return FakeIndex(tmp_path / "index")


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _leftovers(root: Path) -> list[str]:
    """Temporary files or folders left under ``root``."""
    return [str(path) for path in root.rglob("*") if path.name.startswith(".tmp-") or path.name.endswith(".tmp")]


# --------------------------------------------------------------------------- readers


def test_read_sblgnt_groups_words_into_verses() -> None:
    verses = read_sblgnt(FIXTURES / "SBLGNT.tsv")
    assert [verse.sent_id for verse in verses] == ["40001001", "40009003", "40024025", "40025017", "43011035"]
    assert verses[0].text == "Βίβλος γενέσεως Ἰησοῦ χριστοῦ υἱοῦ Δαυὶδ υἱοῦ Ἀβραάμ"
    assert verses[0].tags == ("noun",) * 8
    assert verses[1].tags[:3] == ("conj", "intj", "pron")
    assert verses[-1].tokens == ("ἐδάκρυσεν", "ὁ", "Ἰησοῦς")
    assert sum(len(verse.tokens) for verse in verses) == 31


def test_read_bsb_rebuilds_verses_with_punctuation_spacing() -> None:
    verses = read_bsb([FIXTURES / "ot_BSB.tsv", FIXTURES / "nt_BSB.tsv"])
    assert [verse.sent_id for verse in verses] == [
        "01001003", "19003000", "19003001", "40001001", "40001023", "40009003", "40024025", "40025017", "43011035",
    ]
    texts = {verse.sent_id: verse.text for verse in verses}
    assert texts["01001003"] == "And God said, “Let there be light,” and there was light."
    assert texts["19003000"] == "A Psalm of David, when he fled from his son Absalom."  # superscription kept
    assert texts["40001023"].endswith("Immanuel” (which means, “God with us”).")
    assert all(verse.tags == () for verse in verses)


def test_read_turkish_conllu_merges_inflectional_groups() -> None:
    path = FIXTURES / "tr.conllu"
    sentences = read_turkish_conllu(path)
    assert len(sentences) == 4  # the last one has no trailing blank line, as in the real files
    assert sentences[-1].sent_id == "tr-forum:00001726:S021"
    assert [sentence.text for sentence in sentences] == _conllu_texts(path)
    second = sentences[1]
    assert second.tokens[0] == "Açıklanmayan"  # Açık|la|nma|yan
    assert second.tags[0] == "ADJ"  # tag of the last IG
    assert second.tokens[-2:] == ("imkansız", ".")  # SpaceAfter=No before PUNCT does not merge
    assert second.tags[-2:] == ("VERB", "PUNCT")


def test_bad_word_id_and_missing_column_are_format_errors(tmp_path: Path) -> None:
    bad_id = tmp_path / "bad_id.tsv"
    bad_id.write_text("id\ttext\tpos\nx40001001001\tΒίβλος\tnoun\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad_id.tsv:2: unexpected word id 'x40001001001'"):
        read_sblgnt(bad_id)
    no_pos = tmp_path / "no_pos.tsv"
    no_pos.write_text("id\ttext\nn40001001001\tΒίβλος\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="missing column"):
        read_sblgnt(no_pos)


# --------------------------------------------------------------------------- tags and splits


def test_tag_maps_target_the_shared_tag_set() -> None:
    assert set(GREEK_TAG_MAP) == {"noun", "verb", "det", "conj", "pron", "prep", "adj", "adv", "ptcl", "num", "intj"}
    assert set(GREEK_TAG_MAP.values()) == set(SHARED_TAGS)
    assert GREEK_TAG_MAP["prep"] == "ADP" and GREEK_TAG_MAP["ptcl"] == "PRT" and GREEK_TAG_MAP["intj"] == "X"
    assert set(TURKISH_TAG_MAP.values()) == set(SHARED_TAGS) | {None}
    assert TURKISH_TAG_MAP["PUNCT"] is None and TURKISH_TAG_MAP["ONOM"] == "X"


def test_tag_sentence_drops_turkish_punctuation() -> None:
    third = read_turkish_conllu(FIXTURES / "tr.conllu")[2]
    tagged = tag_sentence(third, TURKISH_TAG_MAP)
    assert ("abur", "X") in tagged and ("cubur", "X") in tagged  # ONOM
    assert all(tag != "PUNCT" for _, tag in tagged)
    assert len(tagged) == len(third.tokens) - third.tags.count("PUNCT")


def test_tag_sentence_rejects_unknown_tags() -> None:
    with pytest.raises(DataFormatError, match="no mapping for tag 'FOO'"):
        tag_sentence(Sentence("s1", ("a",), ("FOO",), "a"), TURKISH_TAG_MAP)


def test_assign_splits_is_fixed_disjoint_and_80_10_10() -> None:
    ids = [f"sent-{index}" for index in range(1000)]
    splits = assign_splits(ids)
    assert {name: len(indices) for name, indices in splits.items()} == {"train": 800, "dev": 100, "test": 100}
    assert sorted(index for indices in splits.values() for index in indices) == list(range(1000))
    reversed_splits = assign_splits(ids[::-1])
    as_ids = {name: {ids[::-1][i] for i in indices} for name, indices in reversed_splits.items()}
    assert as_ids == {name: {ids[i] for i in indices} for name, indices in splits.items()}
    with pytest.raises(DataFormatError, match="not unique"):
        assign_splits(["a", "a"])


def test_write_conll_format(tmp_path: Path) -> None:
    path = tmp_path / "out.tsv"
    counts = write_conll(path, [[("Burda", "PRON"), ("da", "PRT")], [("yok", "VERB")]])
    assert path.read_text(encoding="utf-8") == "Burda\tPRON\nda\tPRT\n\nyok\tVERB\n\n"
    assert (counts.sentences, counts.tokens) == (2, 3)


# --------------------------------------------------------------------------- fetching and caching


def test_fetch_demo_data_offline_end_to_end(tmp_path: Path, fake_index: FakeIndex) -> None:
    cache = tmp_path / "cache"
    demo = fetch_demo_data(cache, progress=False, pins=fake_index.pins, downloader=fake_index.download)
    assert fake_index.calls == ["bible-alignments", "turkish-treebanks"]
    assert demo.root == cache.absolute()
    assert _lines(demo.raw["grc"])[0].startswith("Βίβλος γενέσεως")
    assert _lines(demo.raw["en"])[1].startswith("A Psalm of David")
    assert _lines(demo.raw["tr"]) == _conllu_texts(FIXTURES / "tr.conllu") * 2

    manifest = json.loads(demo.manifest_path.read_text(encoding="utf-8"))
    files = manifest["files"]
    assert files["raw/grc.txt"] == {"sentences": 5, "tokens": 31}
    assert files["raw/en.txt"]["sentences"] == 9
    assert files["raw/tr.txt"]["sentences"] == 8
    assert sum(files[f"pos/grc/{split}.tsv"]["tokens"] for split in ("train", "dev", "test")) == 31
    assert sum(files[f"pos/tr/{split}.tsv"]["sentences"] for split in ("train", "dev", "test")) == 8
    assert manifest["sources"]["turkish-treebanks"]["licence"] == "Apache-2.0"
    assert manifest["tag_maps"]["tr"]["PUNCT"] is None
    pos_rows = [line for path in demo.pos["tr"].values() for line in _lines(path) if line]
    assert all(len(line.split("\t")) == 2 and line.split("\t")[1] in SHARED_TAGS for line in pos_rows)
    assert _leftovers(cache) == []


def _pos_sentences(demo: demo_data.DemoData, lang: str, splits: tuple[str, ...]) -> list[list[tuple[str, str]]]:
    return [sentence for split in splits for sentence in read_conll(demo.pos[lang][split])]


def test_no_pos_dev_or_test_sentence_is_in_the_pretraining_text(tmp_path: Path, fake_index: FakeIndex) -> None:
    demo = fetch_demo_data(tmp_path / "cache", progress=False, pins=fake_index.pins, downloader=fake_index.download)
    held_out_count = {lang: 0 for lang in POS_LANGUAGES}
    for lang in POS_LANGUAGES:
        pretraining = {match_key(line) for line in _lines(demo.pretrain[lang])}
        raw = {match_key(line) for line in _lines(demo.raw[lang])}
        for sentence in _pos_sentences(demo, lang, HELD_OUT_SPLITS):
            key = match_key(" ".join(token for token, _ in sentence))
            assert key in raw  # the sentence is in the source text ...
            assert key not in pretraining, (lang, sentence)  # ... but not in what the demo pretrains on
            held_out_count[lang] += 1
    assert held_out_count == {"en": 1, "grc": 1, "tr": 2}
    # every training sentence of the gold languages is still there
    for lang in ("grc", "tr"):
        pretraining = {match_key(line) for line in _lines(demo.pretrain[lang])}
        train = [match_key(" ".join(token for token, _ in s)) for s in _pos_sentences(demo, lang, ("train",))]
        held = {match_key(" ".join(token for token, _ in s)) for s in _pos_sentences(demo, lang, HELD_OUT_SPLITS)}
        assert all(key in pretraining for key in train if key not in held)


def test_repeated_lines_of_a_held_out_sentence_are_held_out_too() -> None:
    sentences = [Sentence("a", ("x",), (), "Burda da yok."), Sentence("b", ("x",), (), "burda da  yok"),
                 Sentence("c", ("x",), (), "Başka bir cümle.")]
    kept = demo_data.pretraining_sentences(sentences, {"a"}, [])
    assert [sentence.sent_id for sentence in kept] == ["c"]
    kept = demo_data.pretraining_sentences(sentences, set(), ["Başka bir cümle"])
    assert [sentence.sent_id for sentence in kept] == ["a", "b"]


def test_english_pos_follows_the_split_of_the_greek_it_translates(tmp_path: Path, fake_index: FakeIndex) -> None:
    demo = fetch_demo_data(tmp_path / "cache", progress=False, pins=fake_index.pins, downloader=fake_index.download)
    greek_verses = {verse.text: verse.sent_id for verse in read_sblgnt(FIXTURES / "SBLGNT.tsv")}
    english_verses = {match_key(verse.text): verse.sent_id
                      for verse in read_bsb([FIXTURES / "nt_BSB.tsv"])}
    for split in SPLITS:
        greek = {greek_verses[" ".join(t for t, _ in s)] for s in _pos_sentences(demo, "grc", (split,))}
        english = {english_verses[match_key(" ".join(t for t, _ in s))] for s in _pos_sentences(demo, "en", (split,))}
        assert english <= greek  # BSB and SBLGNT share verse numbers in these verses
    manifest = json.loads(demo.manifest_path.read_text(encoding="utf-8"))
    english_total = sum(len(_pos_sentences(demo, "en", (split,))) for split in SPLITS)
    assert english_total == 5  # Matt 1:23 has no alignment rows here: its rare unaligned words drop it
    assert manifest["projection"]["verses_dropped_unknown_tag"] == 1
    rows = [row for sentence in _pos_sentences(demo, "en", SPLITS) for row in sentence]
    assert ("wept", "VERB") in rows and ("Jesus", "NOUN") in rows
    assert all(tag in SHARED_TAGS for _, tag in rows) and not any(token in {",", ".", "“"} for token, _ in rows)


def test_split_of_english_verse_needs_one_greek_split() -> None:
    def verse(*greek: str) -> demo_data.ProjectedVerse:
        return demo_data.ProjectedVerse("40001001", frozenset(greek), (("word", "NOUN"),))

    split_of = {"40001001": "train", "40001002": "test"}
    assert demo_data.split_of_english_verse(verse("40001001"), split_of) == "train"
    assert demo_data.split_of_english_verse(verse("40001001", "40001002"), split_of) is None
    assert demo_data.split_of_english_verse(verse("40001001", "99999999"), split_of) == "train"
    assert demo_data.split_of_english_verse(verse("99999999"), split_of) is None


def test_read_conll_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "pos.tsv"
    write_conll(path, [[("Burda", "PRON"), ("da", "PRT")], [("yok", "VERB")]])
    assert read_conll(path) == [[("Burda", "PRON"), ("da", "PRT")], [("yok", "VERB")]]
    path.write_text("Burda\tPRON\nda PRT\n\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"pos.tsv:2: expected token<TAB>TAG"):
        read_conll(path)


def test_second_fetch_reuses_cache_and_force_refetches(tmp_path: Path, fake_index: FakeIndex) -> None:
    cache = tmp_path / "cache"
    first = fetch_demo_data(cache, progress=False, pins=fake_index.pins, downloader=fake_index.download)
    second = fetch_demo_data(cache, progress=False, pins=fake_index.pins, downloader=fake_index.download)
    assert len(fake_index.calls) == 2 and second == first
    first.raw["en"].unlink()  # an incomplete output set is rebuilt from the extracted sources
    fetch_demo_data(cache, progress=False, pins=fake_index.pins, downloader=fake_index.download)
    assert len(fake_index.calls) == 2 and first.raw["en"].is_file()
    fetch_demo_data(cache, progress=False, force=True, pins=fake_index.pins, downloader=fake_index.download)
    assert len(fake_index.calls) == 4


def test_stale_stamp_triggers_a_new_download(tmp_path: Path, fake_index: FakeIndex) -> None:
    cache = tmp_path / "cache"
    fetch_demo_data(cache, progress=False, pins=fake_index.pins, downloader=fake_index.download)
    (cache / "sources" / "turkish-treebanks-1.0.0" / ".xlint-sha256").write_text("0" * 64, encoding="utf-8")
    (cache / "manifest.json").unlink()
    fetch_demo_data(cache, progress=False, pins=fake_index.pins, downloader=fake_index.download)
    assert fake_index.calls[2:] == ["turkish-treebanks"]


def test_checksum_mismatch_raises_and_leaves_nothing(tmp_path: Path, fake_index: FakeIndex) -> None:
    cache = tmp_path / "cache"
    wrong = [dataclasses.replace(pin, sha256="0" * 64) for pin in fake_index.pins]
    expected = f"checksum mismatch for bible-alignments==0.4.2: expected sha256 {'0' * 64}"
    with pytest.raises(ChecksumMismatchError, match=expected):
        fetch_demo_data(cache, progress=False, pins=wrong, downloader=fake_index.download)
    assert list(cache.rglob("*")) == []


def test_pip_failure_is_a_download_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert "--no-deps" in command and "bible-alignments==0.4.2" in command
        return subprocess.CompletedProcess(command, 1, "", "WARNING: retrying\nERROR: No matching distribution found\n")

    monkeypatch.setattr(demo_sources.subprocess, "run", failing_run)
    expected = "could not download bible-alignments==0.4.2 with pip: ERROR: No matching"
    with pytest.raises(DownloadError, match=expected) as caught:
        demo_data.pip_download(BIBLE_ALIGNMENTS, tmp_path)
    assert "could not be reached" not in str(caught.value)


def test_pip_network_failure_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = (
        "WARNING: Retrying after connection broken by 'NewConnectionError(\"Failed to establish a new connection\")'\n"
        "ERROR: No matching distribution found for turkish-treebanks==1.0.0\n"
    )
    def failing_run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", stderr)

    monkeypatch.setattr(demo_sources.subprocess, "run", failing_run)
    with pytest.raises(DownloadError, match="the package index could not be reached") as caught:
        demo_data.pip_download(TURKISH_TREEBANKS, tmp_path)
    assert "\n" not in str(caught.value)


def test_resolve_cache_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XLINT_DATA_DIR", str(tmp_path / "env"))
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_cache_dir() == tmp_path / "env"
    monkeypatch.delenv("XLINT_DATA_DIR")
    assert resolve_cache_dir() == Path.home() / ".cache" / "xlint" / "data"


# --------------------------------------------------------------------------- CLI


def _patch_index(
    monkeypatch: pytest.MonkeyPatch, pins: list[WheelPin], download: Callable[[WheelPin, Path], Path]
) -> None:
    """Make the CLI's default pins and downloader the given fakes."""
    monkeypatch.setattr(demo_data, "PINS", tuple(pins))
    monkeypatch.setattr(demo_data, "pip_download", download)


def test_cli_fetch_demo_prints_files_and_counts(
    tmp_path: Path, fake_index: FakeIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_index(monkeypatch, fake_index.pins, fake_index.download)
    result = CliRunner().invoke(data, ["fetch-demo", "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "raw/grc.txt" in result.output and "pos/tr/test.tsv" in result.output
    assert " 31 tokens" in result.output


def test_cli_errors_are_one_line(tmp_path: Path, fake_index: FakeIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(pin: WheelPin, dest: Path) -> Path:
        raise DownloadError(f"could not download {pin.requirement} with pip: network is unreachable")

    _patch_index(monkeypatch, fake_index.pins, offline)
    result = CliRunner().invoke(data, ["fetch-demo", "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: could not download bible-alignments==0.4.2 with pip: network is unreachable"

    wrong = [dataclasses.replace(pin, sha256="0" * 64) for pin in fake_index.pins]
    _patch_index(monkeypatch, wrong, fake_index.download)
    result = CliRunner().invoke(data, ["fetch-demo", "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "checksum mismatch" in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- real data


@pytest.mark.network
@pytest.mark.skipif(OFFLINE, reason="XLINT_OFFLINE=1: no download of the pinned wheels")
def test_fetch_real_demo_data(tmp_path: Path) -> None:
    demo = fetch_demo_data(tmp_path / "cache", progress=False)
    counts = {rel: (c.sentences, c.tokens) for rel, c in demo.counts.items()}
    assert counts["raw/grc.txt"] == (7939, 137741)
    assert counts["raw/tr.txt"] == (4851, 57004)  # 2,541 web + 2,310 wiki sentences
    assert counts["raw/en.txt"][0] == 31202  # BSB OT + NT verses incl. Psalm superscriptions

    def total(lang: str) -> tuple[int, int]:
        rows = [counts[f"pos/{lang}/{split}.tsv"] for split in ("train", "dev", "test")]
        return sum(s for s, _ in rows), sum(t for _, t in rows)

    assert total("grc") == (7939, 137741)
    assert total("tr") == (4851, 57415)  # 66,466 IG-merged words minus 9,051 PUNCT
    train, dev, test = (counts[f"pos/grc/{split}.tsv"][0] for split in ("train", "dev", "test"))
    assert (train, dev, test) == (6351, 794, 794)

    manifest = json.loads(demo.manifest_path.read_text(encoding="utf-8"))
    projection = manifest["projection"]
    assert projection["english_words"] == 171894 and projection["punctuation_tokens_dropped"] == 29242
    assert projection["aligned_english_words"] == 171172  # 722 English words are in no record
    assert projection["words_by_record_shape"] == {"1-1": 75546, "1-n": 81212, "n-1": 1809, "n-n": 12605}
    assert sum(projection["words_by_rule"].values()) == projection["english_words"]
    assert projection["verses"] == 7941 and projection["verses_kept"] == 7894
    assert total("en")[0] == 7894 - projection["verses_spanning_splits_or_without_sblgnt"]

    # the pretraining text holds out every POS dev/test sentence (and the English translations of the Greek ones)
    for lang in POS_LANGUAGES:
        pretraining = {match_key(line) for line in _lines(demo.pretrain[lang])}
        for sentence in _pos_sentences(demo, lang, HELD_OUT_SPLITS):
            assert match_key(" ".join(token for token, _ in sentence)) not in pretraining
    assert counts["pretrain/grc.txt"][0] == 7939 - manifest["pretraining_held_out_sentences"]["grc"]
    assert manifest["pretraining_held_out_sentences"]["grc"] >= 794 + 794
