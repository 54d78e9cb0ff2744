"""Shared fixtures: tiny binarized multilingual MLM data and a ``fairseq-train`` runner.

``tiny_mlm_data`` builds, once per session, the layout that the ``xlm_mlm`` task
reads (``DATA/dict.txt``, ``DATA/<lang>/{train,valid,test,metadev}.{bin,idx}``,
``DATA/metadata.json``) from synthetic sentences with fairseq's own binarizer
(``fairseq-preprocess --only-source``), independently of ``xlint preprocess``.

``fairseq_train`` runs the real ``fairseq-train`` entry point in a subprocess.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
USER_DIR = REPO_ROOT / "user_dir"

SPLITS = ("train", "valid", "test", "metadev")

#: distinct vocabularies, so that every language has its own tokens
WORDS = {
    "en": "the cat dog runs sees a big small red blue house tree walks eats green old".split(),
    "fr": "le chat chien court voit un grand petit rouge bleu maison arbre marche mange vert vieux".split(),
}
#: sentences per split; the languages differ in size so that the temperature matters
SENTENCES = {
    "en": {"train": 360, "valid": 40, "test": 20, "metadev": 16},
    "fr": {"train": 180, "valid": 24, "test": 12, "metadev": 10},
}

#: a small, fast configuration shared by the fairseq-train runs of the tests.
#: ``--num-workers 0`` avoids a 5 s data-loader shutdown per checkpoint.  fairseq's
#: ``--data-buffer-size`` prefetch thread is left at its default on purpose: the
#: xlm_mlm task must switch it off itself (with it, the process may abort at exit with
#: "terminate called without an active exception", status 134, after training).
TRAIN_DEFAULTS = (
    "--task", "xlm_mlm", "--arch", "xlm_adapter_tiny",
    "--criterion", "masked_lm", "--optimizer", "adam", "--lr", "1e-3",
    "--max-tokens", "512", "--tokens-per-sample", "64", "--sample-break-mode", "eos",
    "--no-epoch-checkpoints", "--seed", "3", "--cpu", "--num-workers", "0",
    "--log-format", "json", "--log-interval", "1", "--no-progress-bar",
)


@dataclass
class TinyMlmData:
    path: Path
    languages: List[str]
    #: sentences[lang][split]: the raw sentences written for that split
    sentences: Dict[str, Dict[str, List[str]]] = field(default_factory=dict)

    def count(self, lang: str, split: str) -> int:
        return len(self.sentences[lang][split])


def subprocess_env(threads: int = 1) -> Dict[str, str]:
    """Environment for child Pythons: few threads, torch's default ``weights_only`` behaviour."""
    env = dict(os.environ)
    for name in ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_WEIGHTS_ONLY_LOAD"):
        env.pop(name, None)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONHASHSEED"] = "0"
    env.pop("PYTHONPATH", None)
    return env


_PREPROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from fairseq import options
    from fairseq_cli import preprocess

    for argv in json.loads(sys.argv[1]):  # each entry is one fairseq-preprocess command line
        preprocess.main(options.get_preprocessing_parser().parse_args(argv))
    """
)


def _synthetic_sentences(rng: random.Random, words: Sequence[str], count: int) -> List[str]:
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(count)]


def build_tiny_mlm_data(root: Path) -> TinyMlmData:
    """Write raw text and binarize it with ``fairseq-preprocess --only-source``."""
    rng = random.Random(1234)
    raw = root / "raw"
    raw.mkdir(parents=True)
    data = TinyMlmData(path=root / "DATA", languages=list(WORDS))
    all_train = []
    for lang in data.languages:
        data.sentences[lang] = {}
        for split in SPLITS:
            sents = _synthetic_sentences(rng, WORDS[lang], SENTENCES[lang][split])
            data.sentences[lang][split] = sents
            (raw / f"{lang}.{split}.txt").write_text("\n".join(sents) + "\n", encoding="utf-8")
            if split == "train":
                all_train.extend(sents)
    (raw / "all.txt").write_text("\n".join(all_train) + "\n", encoding="utf-8")

    # 1. a dictionary over all training text; 2. every language with that dictionary
    commands = [["--only-source", "--trainpref", str(raw / "all.txt"), "--destdir", str(root / "dict"),
                 "--workers", "1"]]
    for lang in data.languages:
        valid_prefs = ",".join(str(raw / f"{lang}.{split}.txt") for split in ("valid", "test", "metadev"))
        commands.append(["--only-source", "--srcdict", str(root / "dict" / "dict.txt"),
                         "--trainpref", str(raw / f"{lang}.train.txt"), "--validpref", valid_prefs,
                         "--destdir", str(data.path / lang), "--workers", "1"])
    proc = subprocess.run([sys.executable, "-c", _PREPROCESS_SCRIPT, json.dumps(commands)],
                          cwd=root, env=subprocess_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"fairseq-preprocess failed:\n{proc.stdout}\n{proc.stderr}")

    shutil.copy(root / "dict" / "dict.txt", data.path / "dict.txt")
    for lang in data.languages:
        lang_dir = data.path / lang
        for ext in ("bin", "idx"):  # fairseq names extra valid sets valid1, valid2, ...
            (lang_dir / f"valid1.{ext}").rename(lang_dir / f"test.{ext}")
            (lang_dir / f"valid2.{ext}").rename(lang_dir / f"metadev.{ext}")
        for split in SPLITS:
            assert (lang_dir / f"{split}.bin").is_file() and (lang_dir / f"{split}.idx").is_file()
    (data.path / "metadata.json").write_text(json.dumps({"languages": data.languages}), encoding="utf-8")
    return data


@pytest.fixture(scope="session")
def tiny_mlm_data(tmp_path_factory) -> TinyMlmData:
    """Two languages (en: 360 training sentences, fr: 180) in the ``xlm_mlm`` data layout."""
    return build_tiny_mlm_data(tmp_path_factory.mktemp("tiny_mlm"))


# --------------------------------------------------------------------------- fairseq-train


@dataclass
class TrainRun:
    returncode: int
    output: str
    save_dir: Path

    def json_records(self, tag: str) -> List[dict]:
        """The JSON records of log lines ``| <tag> | {...}`` (e.g. ``valid``, ``train``)."""
        return parse_json_log(self.output, tag)


def parse_json_log(output: str, tag: str) -> List[dict]:
    marker = f"| {tag} | "
    records = []
    for line in output.splitlines():
        if marker in line:
            payload = line.split(marker, 1)[1].strip()
            if payload.startswith("{"):
                records.append(json.loads(payload))
    return records


def fairseq_train_command(data_dir, save_dir, *extra: str, variant: Optional[str] = "adapter",
                          max_update: int = 4, user_dir=USER_DIR, program: Optional[Sequence[str]] = None
                          ) -> List[str]:
    """``program`` defaults to ``python -m fairseq_cli.train`` (what ``fairseq-train`` runs)."""
    program = list(program or [sys.executable, "-m", "fairseq_cli.train"])
    cmd = [*program, str(data_dir), "--user-dir", str(user_dir),
           *TRAIN_DEFAULTS, "--save-dir", str(save_dir), "--max-update", str(max_update)]
    if variant is not None:
        cmd += ["--language-specific", variant]
    return cmd + list(extra)


def run_fairseq_train(data_dir, save_dir, *extra: str, variant: Optional[str] = "adapter",
                      max_update: int = 4, cwd=None, user_dir=USER_DIR, check: bool = True,
                      threads: int = 1, program: Optional[Sequence[str]] = None) -> TrainRun:
    """Run ``fairseq-train`` (``python -m fairseq_cli.train``) in a subprocess; return its log."""
    cmd = fairseq_train_command(data_dir, save_dir, *extra, variant=variant, max_update=max_update,
                                user_dir=user_dir, program=program)
    proc = subprocess.run(cmd, cwd=cwd or Path(save_dir).parent, env=subprocess_env(threads),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    run = TrainRun(proc.returncode, proc.stdout, Path(save_dir))
    if check and proc.returncode != 0:
        raise AssertionError(f"fairseq-train failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-6000:]}")
    return run


@pytest.fixture(scope="session")
def fairseq_train():
    """``fairseq_train(data_dir, save_dir, *extra, variant=..., max_update=..., cwd=...)`` -> TrainRun."""
    return run_fairseq_train


@pytest.fixture(scope="session")
def adapter_train_run(tiny_mlm_data, tmp_path_factory) -> TrainRun:
    """A short fairseq-train run of the adapter variant (shared by the smoke and compat tests)."""
    save_dir = tmp_path_factory.mktemp("adapter_run") / "ckpt"
    run = run_fairseq_train(tiny_mlm_data.path, save_dir, variant="adapter", max_update=4)
    assert (save_dir / "checkpoint_last.pt").is_file()
    return run
