"""The training process: fairseq's own ``fairseq-train``, timed per log interval, taking turns.

:func:`train_worker` runs ``fairseq_cli.train.cli_main`` unchanged except for two things:

* every ``train_inner`` line gets ``bench_cpu_s`` and ``bench_wall_s``: the process CPU
  seconds and wall seconds of that interval (fairseq resets its ``wps`` meter right
  after the line, so both cover the interval ``wps`` covers);
* with :data:`TURN_FDS_ENV` set (``READY_FD,GO_FD``), the process waits for its turn
  before its first update and after every ``train_inner`` line: it writes one byte to
  READY_FD and blocks until the parent writes one to GO_FD.  The wait comes before
  fairseq resets its meters and before the next interval's clocks start, so it is in
  no measured number.  The parent (:mod:`throughput.runs`) gives one run a turn at a
  time: the intervals of the variants run one right after the other.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, Dict, List, Optional

#: the entry script's first argument that makes it run :func:`train_worker`
WORKER_FLAG = "--fairseq-train-worker"
#: ``READY_FD,GO_FD`` of the turn pipes (set by :mod:`throughput.runs`); unset: no turns
TURN_FDS_ENV = "XLINT_BENCH_TURN_FDS"


class TurnGate:
    """One side of the turn protocol: announce a pause point, block until the next turn."""

    def __init__(self, ready_fd: int, go_fd: int) -> None:
        self.ready_fd, self.go_fd = ready_fd, go_fd

    @classmethod
    def from_environment(cls) -> Optional["TurnGate"]:
        value = os.environ.get(TURN_FDS_ENV)
        if not value:
            return None
        ready_fd, go_fd = (int(fd) for fd in value.split(","))
        return cls(ready_fd, go_fd)

    def wait_for_turn(self) -> None:
        os.write(self.ready_fd, b"r")
        if not os.read(self.go_fd, 1):
            raise SystemExit("the benchmark's parent process went away")


class IntervalClock:
    """CPU and wall seconds since the last :meth:`restart`."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def elapsed(self) -> Dict[str, float]:
        return {"bench_cpu_s": round(time.process_time() - self.cpu, 4),
                "bench_wall_s": round(time.perf_counter() - self.wall, 4)}


def _pause_point(gate: Optional[TurnGate], clock: IntervalClock) -> None:
    if gate is not None:
        gate.wait_for_turn()
    clock.restart()


def _before_first_epoch(train_epoch: Callable, gate: Optional[TurnGate], clock: IntervalClock) -> Callable:
    """``fairseq_cli.train.train`` (one epoch), pausing before the first call's first update."""
    started = False

    def train_epoch_in_turn(*args, **kwargs):
        nonlocal started
        if not started:
            started = True
            _pause_point(gate, clock)
        return train_epoch(*args, **kwargs)

    return train_epoch_in_turn


def train_worker(fairseq_argv: List[str]) -> None:
    """Run ``fairseq-train`` with ``fairseq_argv``: timing fields on ``train_inner`` lines, turns if asked."""
    from fairseq_cli import train  # first: it configures the root logger before fairseq is imported
    from fairseq.logging import progress_bar

    gate = TurnGate.from_environment()
    clock = IntervalClock()
    original_log = progress_bar.JsonProgressBar.log

    def log(self, stats, tag=None, step=None):
        if tag != "train_inner":
            return original_log(self, stats, tag=tag, step=step)
        result = original_log(self, dict(stats, **clock.elapsed()), tag=tag, step=step)
        _pause_point(gate, clock)  # fairseq resets the wps meter when this returns
        return result

    progress_bar.JsonProgressBar.log = log
    train.train = _before_first_epoch(train.train, gate, clock)
    sys.argv = ["fairseq-train", *fairseq_argv]
    train.cli_main()
