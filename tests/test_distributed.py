"""Data-parallel training over gloo with two hand-launched processes (adapter variant).

fairseq only writes checkpoints on rank 0, so each rank runs ``fairseq-train`` through
a small wrapper that records the Trainer and, when training returns, dumps that rank's
model parameters.  Both ranks must end with identical parameters (their batches differ,
so only synchronised gradients can keep them equal), the parameters must have moved
from their initial values, and a distributed resume (rank 0 reads the checkpoint and
broadcasts it; rank 1 unpickles it under torch's ``weights_only`` default) must work.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import fairseq_train_command, subprocess_env

WORLD_SIZE = 2

_WRAPPER = textwrap.dedent(
    """
    import copy
    import sys
    import torch
    from fairseq import trainer as trainer_module

    dump_path, argv = sys.argv[1], sys.argv[2:]
    seen = {}
    original_init = trainer_module.Trainer.__init__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        seen["trainer"] = self
        seen["initial"] = {k: copy.deepcopy(v) for k, v in self.get_model().state_dict().items()}

    trainer_module.Trainer.__init__ = recording_init

    from fairseq_cli.train import cli_main

    sys.argv = ["fairseq-train"] + argv
    cli_main()
    trainer = seen["trainer"]
    torch.save({
        "rank": trainer.data_parallel_rank,
        "world_size": trainer.data_parallel_world_size,
        "num_updates": trainer.get_num_updates(),
        "initial": seen["initial"],
        "final": {k: copy.deepcopy(v) for k, v in trainer.get_model().state_dict().items()},
    }, dump_path)
    """
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ddp(data_dir: Path, save_dir: Path, work: Path, max_update: int, tag: str, *extra: str) -> list:
    wrapper = work / "ddp_wrapper.py"
    wrapper.write_text(_WRAPPER)
    port = free_port()
    procs, logs, dumps = [], [], []
    for rank in range(WORLD_SIZE):
        dump = work / f"{tag}_rank{rank}.pt"
        log = open(work / f"{tag}_rank{rank}.log", "w")
        argv = fairseq_train_command(
            data_dir, save_dir, "--distributed-world-size", str(WORLD_SIZE), "--distributed-rank", str(rank),
            "--distributed-no-spawn", "--distributed-init-method", f"tcp://127.0.0.1:{port}",
            "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp", *extra,
            variant="adapter", max_update=max_update,
        )[3:]  # drop "python -m fairseq_cli.train": the wrapper calls cli_main itself
        procs.append(subprocess.Popen([sys.executable, str(wrapper), str(dump), *argv], cwd=work,
                                      env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT))
        logs.append(log)
        dumps.append(dump)
    try:
        codes = [p.wait(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    for rank, code in enumerate(codes):
        if code != 0:
            text = (work / f"{tag}_rank{rank}.log").read_text()
            pytest.fail(f"rank {rank} exited with {code}:\n{text[-5000:]}")
    return [torch.load(d, weights_only=False) for d in dumps]


def assert_same_parameters(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def moved(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[name], b[name]) for name in a)


def test_two_process_gloo_training_keeps_ranks_identical(tiny_mlm_data, tmp_path):
    save_dir = tmp_path / "ckpt"
    first = run_ddp(tiny_mlm_data.path, save_dir, tmp_path, max_update=3, tag="first")
    assert [d["rank"] for d in first] == [0, 1]
    assert all(d["world_size"] == WORLD_SIZE and d["num_updates"] == 3 for d in first)
    assert_same_parameters(first[0]["final"], first[1]["final"])
    for d in first:
        assert moved(d["initial"], d["final"]), "training did not change the parameters"
        # language-specific modules of the trained languages moved too
        assert moved({k: v for k, v in d["initial"].items() if ".per_language." in k},
                     {k: v for k, v in d["final"].items() if ".per_language." in k})
    assert (save_dir / "checkpoint_last.pt").is_file()
    log0 = (tmp_path / "first_rank0.log").read_text()
    assert "training on 2 devices" in log0

    # distributed resume: rank 0 loads checkpoint_last.pt and broadcasts it to rank 1
    resumed = run_ddp(tiny_mlm_data.path, save_dir, tmp_path, max_update=6, tag="resumed")
    assert all(d["num_updates"] == 6 for d in resumed)
    assert "Loaded checkpoint" in (tmp_path / "resumed_rank0.log").read_text()
    assert_same_parameters(resumed[0]["final"], resumed[1]["final"])
    assert moved(first[0]["final"], resumed[0]["final"])


def test_two_process_meta_mlm_keeps_theta_and_every_phi_identical(tiny_mlm_data, tmp_path):
    """meta_mlm averages the meta-gradient over ranks: theta and every language's phi agree."""
    runs = run_ddp(tiny_mlm_data.path, tmp_path / "ckpt", tmp_path, 8, "meta", "--task", "meta_mlm")
    tensors = [{k: v for k, v in d["final"].items() if not k.endswith("_extra_state")} for d in runs]
    assert_same_parameters(tensors[0], tensors[1])
    for lang in tiny_mlm_data.languages:
        phi = [k for k in tensors[0] if f".per_language.{lang}." in k]
        assert phi and moved({k: runs[0]["initial"][k] for k in phi}, {k: tensors[0][k] for k in phi}), lang
    streams = [d["final"]["meta_state._extra_state"]["streams"] for d in runs]
    assert streams[0] == streams[1] and streams[0]
    assert "meta_skipped" in (tmp_path / "meta_rank0.log").read_text()
