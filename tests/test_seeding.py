"""stable_seed: the same seed on every machine, run and PYTHONHASHSEED."""
import os
import subprocess
import sys

from xlint.analysis.seeding import stable_seed


def test_recorded_values_never_change():
    # recorded once: a change here would silently re-draw every split and few-shot subset
    assert stable_seed("subsample", "fr_l") == 13696310301398711246
    assert stable_seed("fr") == 1732403333711244647


def test_parts_are_separated_and_ordered():
    assert stable_seed("ab", "c") != stable_seed("a", "bc")
    assert stable_seed("a", "b") != stable_seed("b", "a")
    assert 0 <= stable_seed("x") < 2 ** 64


def test_independent_of_the_python_hash_seed():
    code = "from xlint.analysis.seeding import stable_seed; print(stable_seed('fr', 3))"
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env=dict(os.environ, PYTHONHASHSEED=seed)).stdout for seed in ("1", "2")}
    assert outputs == {f"{stable_seed('fr', 3)}\n"}
