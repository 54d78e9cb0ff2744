"""Real ``fairseq-train`` runs: every variant trains on two languages and reports
per-language validation; an interrupted-and-resumed run equals an uninterrupted one."""
from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

import xlint.user_dir  # noqa: F401  (allow-lists fairseq's checkpoint globals)
from fairseq import checkpoint_utils

from conftest import REPO_ROOT, run_fairseq_train

#: every test runs fairseq-train
pytestmark = pytest.mark.slow

VARIANTS = ["joint", "ffn", "attn", "adapter", "shared_adapter"]
#: which variants own per-language modules, and which modules they are
LANGUAGE_MODULES = {"joint": None, "ffn": ".ffn.per_language.", "attn": ".self_attn.per_language.",
                    "adapter": ".adapter_after_ffn.per_language.", "shared_adapter": None}


def load_model_state(path: Path) -> dict:
    return checkpoint_utils.load_checkpoint_to_cpu(str(path))["model"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_fairseq_train_each_variant(variant, tiny_mlm_data, tmp_path, request):
    save_dir = tmp_path / "ckpt"
    if variant == "adapter":  # the session's adapter run (also used by the checkpoint tests)
        run = request.getfixturevalue("adapter_train_run")
        save_dir = run.save_dir
    elif variant == "joint":
        # as a user types it in the repository root: the console script and a relative --user-dir
        run = run_fairseq_train(tiny_mlm_data.path, save_dir, variant=variant, max_update=4,
                                cwd=REPO_ROOT, user_dir="user_dir",
                                program=[str(Path(sys.executable).parent / "fairseq-train")])
    else:
        run = run_fairseq_train(tiny_mlm_data.path, save_dir, variant=variant, max_update=4)

    valid = run.json_records("valid")
    assert valid, run.output[-3000:]
    last = valid[-1]
    assert int(last["valid_num_updates"]) == 4
    per_lang = {}
    for lang in ("en", "fr"):
        for key in (f"valid_loss_{lang}", f"valid_ppl_{lang}"):
            assert key in last, sorted(last)
            assert math.isfinite(float(last[key]))
        per_lang[lang] = float(last[f"valid_loss_{lang}"])
        assert float(last[f"valid_ppl_{lang}"]) == pytest.approx(2 ** per_lang[lang], rel=0.01)
    # the overall loss is the token-weighted mean of the per-language losses
    assert min(per_lang.values()) - 0.002 <= float(last["valid_loss"]) <= max(per_lang.values()) + 0.002

    train_inner = run.json_records("train_inner")
    assert [int(r["num_updates"]) for r in train_inner] == [1, 2, 3, 4]
    for record in train_inner:  # one language per update: exactly one per-language loss is logged
        langs = [lang for lang in ("en", "fr") if f"loss_{lang}" in record]
        assert len(langs) == 1, record
        assert float(record[f"loss_{langs[0]}"]) == pytest.approx(float(record["loss"]), abs=0.002)

    state = checkpoint_utils.load_checkpoint_to_cpu(str(save_dir / "checkpoint_last.pt"))
    assert state["cfg"]["model"]["language_specific"] == variant
    assert state["cfg"]["model"]["model_languages"] == "en,fr"
    names = list(state["model"])
    marker = LANGUAGE_MODULES[variant]
    if marker is None:
        assert not any("per_language" in n for n in names)
    else:
        for lang in ("en", "fr"):
            assert any(f"{marker}{lang}." in n for n in names), (marker, lang)
    assert any("adapter" in n for n in names) == (variant in ("adapter", "shared_adapter"))


def test_resume_equals_uninterrupted_training(tiny_mlm_data, tmp_path):
    """N updates, stop, resume to 2N == 2N updates in one go (adapter variant, same seed).

    N is in the middle of an epoch and 2N lies in the next epoch, so the restored
    iterator position, the language plan of the next epoch, the optimizer state and
    the per-update seeds must all be right.
    """
    n = 8
    common = ("--save-interval-updates", str(n))
    straight = run_fairseq_train(tiny_mlm_data.path, tmp_path / "straight", *common, max_update=2 * n)
    first = run_fairseq_train(tiny_mlm_data.path, tmp_path / "resumed", *common, max_update=n)
    halfway = tmp_path / "halfway.pt"
    shutil.copy(tmp_path / "resumed" / "checkpoint_last.pt", halfway)
    resumed = run_fairseq_train(tiny_mlm_data.path, tmp_path / "resumed", *common, max_update=2 * n)
    assert "Loaded checkpoint" in resumed.output and f"@ {n} updates" in resumed.output

    epochs = {int(r["epoch"]) for r in straight.json_records("train_inner")}
    assert len(epochs) >= 2, "2N updates should cross an epoch boundary"
    assert int(first.json_records("train_inner")[-1]["epoch"]) == min(epochs), "N should end mid-epoch"

    a = load_model_state(tmp_path / "straight" / "checkpoint_last.pt")
    b = load_model_state(tmp_path / "resumed" / "checkpoint_last.pt")
    mid = load_model_state(halfway)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    assert any(not torch.equal(a[name], mid[name]) for name in a), "the resumed run did not train"

    # the same losses were logged after the resume point
    def tail(run):
        return [(r["num_updates"], r["loss"]) for r in run.json_records("train_inner") if int(r["num_updates"]) > n]

    assert tail(straight) == tail(resumed)


def tensorboard_scalars(folder: Path) -> dict:
    """{tag: [values]} of every event file in ``folder`` (TFRecord framing: length, crc, event, crc)."""
    from tensorboardX.proto import event_pb2

    scalars: dict = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset + 12 <= len(data):
            length = int.from_bytes(data[offset:offset + 8], "little")
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars


def test_tensorboard_logdir_records_the_per_language_scalars(tiny_mlm_data, tmp_path):
    logdir = tmp_path / "tb"
    run_fairseq_train(tiny_mlm_data.path, tmp_path / "ckpt", "--tensorboard-logdir", str(logdir))
    train, valid = tensorboard_scalars(logdir / "train_inner"), tensorboard_scalars(logdir / "valid")
    assert train["loss"] and all(math.isfinite(v) for v in train["loss"])
    assert {"ppl_en", "ppl_fr"} <= set(valid), sorted(valid)
