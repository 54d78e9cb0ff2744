"""Shared fixtures: tiny binarized multilingual MLM data and a ``fairseq-train`` runner.

``tiny_mlm_data`` builds, once per session, the layout that the ``xlm_mlm`` task
reads (``DATA/dict.txt``, ``DATA/<lang>/{train,valid,test,metadev}.{bin,idx}``,
``DATA/metadata.json``) from synthetic sentences with fairseq's own binarizer
(:mod:`xlint.preprocess.synthetic_corpus`, the same as ``fairseq-preprocess
--only-source``), independently of ``xlint preprocess``.

``fairseq_train`` runs the real ``fairseq-train`` entry point in a subprocess.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

from xlint.cli.fairseq_logs import parse_log_records
from xlint.preprocess.synthetic_corpus import CorpusSpec, SyntheticCorpus, build_synthetic_corpus

REPO_ROOT = Path(__file__).resolve().parents[1]
USER_DIR = REPO_ROOT / "user_dir"

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


#: the fixture's corpus: uniform draws from WORDS, 3 to 12 words per sentence
TINY_MLM_SPEC = CorpusSpec(vocabularies=WORDS, sentences=SENTENCES, length=(3, 12), distribution="uniform",
                           seed=1234)

#: ``tiny_mlm_data``: ``path`` (DATA), ``languages``, ``sentences[lang][split]`` and ``count(lang, split)``
TinyMlmData = SyntheticCorpus


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


def build_tiny_mlm_data(root: Path) -> TinyMlmData:
    """:data:`TINY_MLM_SPEC` binarized with fairseq's binarizer into ``root/DATA`` (raw text in ``root/raw``)."""
    return build_synthetic_corpus(TINY_MLM_SPEC, root / "DATA", raw_dir=root / "raw")


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
    """The JSON records of a fairseq-train output's ``| <tag> | {...}`` lines."""
    return parse_log_records(output.splitlines(), tag)


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


#: the test files that take longest (minutes: whole recipes, several processes), started first, so that
#: ``pytest -n 2 --dist loadfile`` (which gives each file to one worker in collection order) does not end
#: with one worker running a long file while the other idles
LONGEST_FIRST = (
    "test_recipes_guo2023_tables.py", "test_recipes_figures_extra.py", "test_recipes_wu2022.py",
    "test_recipes_wang_downstream.py", "test_recipes_wang_analyses.py", "test_recipes.py", "test_distributed.py",
    "test_finetune_e2e.py", "test_finetune_methods.py", "test_xlmr.py", "test_training_curves.py",
    "test_recipes_guo2023.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))  # stable: file order kept
