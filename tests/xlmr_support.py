"""A tiny XLM-R-shaped release, built here because no model hub is reachable from the tests.

:func:`build_tiny_xlmr` makes, in about 15 s on one core, what an official XLM-R download
(``xlmr.base.tar.gz``) unpacks to::

    RELEASE/model.pt                  a fairseq ``--task masked_lm --arch roberta`` checkpoint
    RELEASE/dict.txt                  the fairseq dictionary of the sentencepiece pieces
    RELEASE/sentencepiece.bpe.model   the sentencepiece model

1. a sentencepiece unigram model is trained on multilingual fixture text (Latin, Cyrillic,
   Arabic, Devanagari; the POS and XNLI fixtures' sentences);
2. its pieces, in sentencepiece id order without ``<unk> <s> </s>``, form ``dict.txt`` (as in
   the release: fairseq id = sentencepiece id + 1);
3. the text, encoded into pieces, is binarised with that dictionary (fairseq's binarizer),
   and fairseq's own ``fairseq-train --task masked_lm --arch roberta`` trains a 2-layer,
   d=32 encoder for a few updates (no xlint code involved);
4. ``checkpoint_last.pt`` without its optimizer state becomes ``model.pt``.

``tiny_xlmr`` (a session fixture) memoises it.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List

import pytest
import torch

from conftest import subprocess_env

FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: multilingual fixture text: Latin (en), Cyrillic (ru), Arabic (ar), Devanagari (hi)
SCRIPT_FILES = {lang: FIXTURES / "preprocess" / f"{lang}.txt" for lang in ("en", "ru", "ar", "hi")}
POS_FIXTURE = FIXTURES / "formats" / "fr_gsd-ud-dev.conllu"
XNLI_FIXTURE = FIXTURES / "formats" / "xnli.dev.tsv"
VOCAB_SIZE = 500
#: the encoder's size (tiny), trained for UPDATES updates
ARCH_OPTIONS = ("--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
                "--encoder-attention-heads", "2", "--max-positions", "64")
UPDATES = 3


@dataclass
class TinyXlmr:
    release: Path  # model.pt, dict.txt, sentencepiece.bpe.model
    texts: List[str]  # the multilingual training text (one sentence per item)

    @property
    def model(self) -> Path:
        return self.release / "model.pt"


def fixture_sentences() -> List[str]:
    """Every non-empty line of the script fixtures, and the POS and XNLI fixtures' sentences."""
    lines: List[str] = []
    for path in SCRIPT_FILES.values():
        lines += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for line in POS_FIXTURE.read_text(encoding="utf-8").splitlines():
        if line.startswith("# text = "):
            lines.append(line[len("# text = "):])
    for row in XNLI_FIXTURE.read_text(encoding="utf-8").splitlines()[1:]:
        cells = row.split("\t")
        lines += [cells[6], cells[7]]
    return lines


def build_tiny_xlmr(root: Path) -> TinyXlmr:
    import sentencepiece as spm

    from xlint.preprocess.binarize import binarize_split

    root.mkdir(parents=True, exist_ok=True)
    texts = fixture_sentences()
    text_file = root / "text.txt"
    text_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text_file), model_prefix=str(root / "spm"), vocab_size=VOCAB_SIZE,
                                   character_coverage=1.0, model_type="unigram", num_threads=1, minloglevel=2,
                                   seed_sentencepiece_size=10000)
    processor = spm.SentencePieceProcessor(model_file=str(root / "spm.model"))
    size = processor.get_piece_size()
    assert [processor.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]

    data = root / "mlm-data"
    data.mkdir()
    (data / "dict.txt").write_text("".join(f"{processor.id_to_piece(i)} {size - i}\n" for i in range(3, size)),
                                   encoding="utf-8")
    encoded = root / "encoded.txt"
    encoded.write_text("".join(" ".join(processor.encode(line, out_type=str)) + "\n" for line in texts),
                       encoding="utf-8")
    for split in ("train", "valid"):
        binarize_split(encoded, data / "dict.txt", data / split)

    save_dir = root / "mlm-run"
    command = [sys.executable, "-m", "fairseq_cli.train", str(data), "--task", "masked_lm", "--criterion",
               "masked_lm", "--arch", "roberta", *ARCH_OPTIONS, "--tokens-per-sample", "64",
               "--sample-break-mode", "complete", "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "8",
               "--max-update", str(UPDATES), "--seed", "1", "--cpu", "--num-workers", "0", "--no-epoch-checkpoints",
               "--no-progress-bar", "--log-format", "json", "--save-dir", str(save_dir)]
    process = subprocess.run(command, env=subprocess_env(1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=240)
    assert process.returncode == 0, process.stdout[-4000:]

    release = root / "xlmr.tiny"
    release.mkdir()
    state = torch.load(save_dir / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    state.pop("last_optimizer_state", None)  # the official model.pt files hold no optimizer state
    torch.save(state, release / "model.pt")
    shutil.copyfile(data / "dict.txt", release / "dict.txt")
    shutil.copyfile(root / "spm.model", release / "sentencepiece.bpe.model")
    return TinyXlmr(release=release, texts=texts)


@pytest.fixture(scope="session")
def tiny_xlmr(tmp_path_factory) -> TinyXlmr:
    """A tiny release in the official XLM-R layout (see the module docstring)."""
    return build_tiny_xlmr(tmp_path_factory.mktemp("tiny_xlmr") / "build")
