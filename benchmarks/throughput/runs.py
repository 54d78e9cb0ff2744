"""Starting the training runs, handing out turns, reading their logs.

Two schedules (``--interleave``):

* ``interval`` (default): the runs of one repeat (one per variant) start together;
  once all have finished start-up, one run at a time gets a turn of one log
  interval (see :mod:`throughput.worker`), in a variant order rotated every round.
  The intervals that end at the same update ran one right after the other, so a
  change of the machine's load between them is short, and it hits all variants of
  a round alike.
* ``run``: one whole run after another, the order rotated every repeat.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

from .stats import Interval, Run, steady
from .worker import TURN_FDS_ENV

TRAIN_INNER = re.compile(r"train_inner\s*[|:]\s*(\{.*\})\s*$")
PARAMS_LINE = re.compile(r"num\. shared model params: ([\d,]+)")
INTERVAL_KEYS = ("num_updates", "wps", "ups", "wpb", "bsz", "epoch", "bench_cpu_s", "bench_wall_s")


def log_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rotated(items: Sequence[str], shift: int) -> List[str]:
    shift %= max(1, len(items))
    return [*items[shift:], *items[:shift]]


@dataclass
class TrainingProcess:
    """One ``fairseq-train`` child with its log file and, when it takes turns, its turn pipes."""

    variant: str
    run_dir: Path
    process: subprocess.Popen
    log: TextIO
    ready_fd: Optional[int] = None
    go_fd: Optional[int] = None
    started: float = field(default_factory=time.perf_counter)
    wall_s: float = 0.0

    @classmethod
    def start(cls, variant: str, cmd: List[str], run_dir: Path, env: Dict[str, str],
              take_turns: bool) -> "TrainingProcess":
        run_dir.mkdir(parents=True, exist_ok=True)
        log = open(run_dir / "train.log", "w", encoding="utf-8")
        argv = cmd + ["--save-dir", str(run_dir / "checkpoints")]
        if not take_turns:
            process = subprocess.Popen(argv, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT, env=env)
            return cls(variant, run_dir, process, log)
        ready_read, ready_write = os.pipe()
        go_read, go_write = os.pipe()
        child_env = dict(env, **{TURN_FDS_ENV: f"{ready_write},{go_read}"})
        process = subprocess.Popen(argv, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT, env=child_env,
                                   pass_fds=(ready_write, go_read))
        os.close(ready_write)
        os.close(go_read)
        return cls(variant, run_dir, process, log, ready_read, go_write)

    def wait_until_paused(self) -> bool:
        """Block until the run pauses for its next turn (True) or ends (False)."""
        if self.ready_fd is not None and os.read(self.ready_fd, 1):
            return True
        self.finish()
        return False

    def give_turn(self) -> None:
        os.write(self.go_fd, b"g")

    def finish(self) -> None:
        code = self.process.wait()
        self.wall_s = time.perf_counter() - self.started
        self.log.close()
        for fd in (self.ready_fd, self.go_fd):
            if fd is not None:
                os.close(fd)
        self.ready_fd = self.go_fd = None
        if code:
            tail = (self.run_dir / "train.log").read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
            raise SystemExit(f"fairseq-train failed ({code}); log: {self.run_dir / 'train.log'}\n" + "\n".join(tail))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


#: what one repeat ran: the variant order of each round (``interval``) or of the runs (``run``)
Schedule = List[object]


def run_in_turns(commands: Dict[str, List[str]], order: List[str], run_dirs: Dict[str, Path],
                 env: Dict[str, str]) -> Tuple[Schedule, Dict[str, float]]:
    """One repeat, ``--interleave interval``: all runs alive, one log interval per turn.

    Returns the variant order of every round and each process's wall seconds.
    """
    processes = {v: TrainingProcess.start(v, commands[v], run_dirs[v], env, take_turns=True) for v in order}
    try:
        alive = {v for v in order if processes[v].wait_until_paused()}  # start-up done
        rounds: Schedule = []
        while alive:
            turn_order = rotated([v for v in order if v in alive], len(rounds))
            rounds.append(turn_order)
            alive = {v for v in turn_order if _one_turn(processes[v])}
    finally:
        for process in processes.values():
            process.kill()
    return rounds, {v: process.wall_s for v, process in processes.items()}


def _one_turn(process: TrainingProcess) -> bool:
    process.give_turn()
    return process.wait_until_paused()


def run_one_after_another(commands: Dict[str, List[str]], order: List[str], run_dirs: Dict[str, Path],
                          env: Dict[str, str]) -> Tuple[Schedule, Dict[str, float]]:
    """One repeat, ``--interleave run``: each run by itself, in ``order``; each one's wall seconds."""
    walls = {}
    for variant in order:
        process = TrainingProcess.start(variant, commands[variant], run_dirs[variant], env, take_turns=False)
        try:
            process.finish()
        finally:
            process.kill()
        walls[variant] = process.wall_s
    return list(order), walls


SCHEDULES = {"interval": run_in_turns, "run": run_one_after_another}


def parse_training_log(log_path: Path) -> Run:
    """The run's ``train_inner`` intervals (with tokens per CPU-second) and fairseq's parameter count."""
    text = log_path.read_text(encoding="utf-8", errors="replace")
    intervals: List[Interval] = []
    params = None
    for line in text.splitlines():
        match = TRAIN_INNER.search(line)
        if match:
            stats = json.loads(match.group(1))
            intervals.append({k: float(stats[k]) for k in INTERVAL_KEYS if k in stats})
        match = PARAMS_LINE.search(line)
        if match and params is None:
            params = int(match.group(1).replace(",", ""))
    if not any(iv["num_updates"] for iv in intervals):
        raise SystemExit(f"no train_inner lines with wps in {log_path}")
    previous = 0.0
    for iv in intervals:  # tokens per CPU-second of each interval
        updates, previous = iv["num_updates"] - previous, iv["num_updates"]
        if iv.get("bench_cpu_s"):
            iv["cpu_wps"] = iv["wpb"] * updates / iv["bench_cpu_s"]
    return {"intervals": intervals, "params_logged": params, "log": str(log_path)}


def finished_run(run_dir: Path, repeat: int, wall_s: float, warmup_updates: int) -> Run:
    """A finished run's log, read, with its steady throughput and the share of time it had a core."""
    run = parse_training_log(run_dir / "train.log")
    run.update(repeat=repeat, process_wall_s=round(wall_s, 2))
    run["steady_wps"] = steady(run, warmup_updates)
    run["steady_cpu_wps"] = steady(run, warmup_updates, "cpu_wps")
    cpu_s, busy_wall_s = (steady(run, warmup_updates, k) for k in ("bench_cpu_s", "bench_wall_s"))
    run["busy"] = cpu_s / busy_wall_s if cpu_s and busy_wall_s else float("nan")
    return run


def describe(run: Run, variant: str, repeat: int, repeats: int) -> str:
    return (f"[bench] repeat {repeat + 1}/{repeats} {variant:>14}: steady wps {run['steady_wps'] or float('nan'):,.0f}"
            f" (intervals: " + ", ".join(f"{iv['wps']:.0f}" for iv in run["intervals"])
            + f"; tokens/CPU-s {run['steady_cpu_wps'] or float('nan'):,.0f}; CPU/wall {run['busy']:.2f}; "
            f"{run['process_wall_s']} s)")


def run_all(commands: Dict[str, List[str]], variants: List[str], work: Path, env: Dict[str, str],
            repeats: int, interleave: str, warmup_updates: int) -> Tuple[Dict[str, List[Run]], List[Schedule]]:
    """Every repeat of every variant, the order rotated every repeat; the runs and each repeat's schedule."""
    runs: Dict[str, List[Run]] = {v: [] for v in variants}
    schedules = []
    for rep in range(repeats):
        order = rotated(variants, rep)
        run_dirs = {v: work / "runs" / f"{v}_{rep}" for v in order}
        log_progress(f"[bench] repeat {rep + 1}/{repeats}: {', '.join(order)} "
                     + ("taking turns" if interleave == "interval" else "one after another"))
        schedule, walls = SCHEDULES[interleave](commands, order, run_dirs, env)
        schedules.append(schedule)
        for variant in order:
            run = finished_run(run_dirs[variant], rep, walls[variant], warmup_updates)
            if len({iv.get("epoch") for iv in run["intervals"]}) > 1:
                log_progress(f"[bench] warning: {variant} run {rep} crossed an epoch boundary; raise --train-tokens")
            runs[variant].append(run)
            log_progress(describe(run, variant, rep, repeats))
    return runs, schedules
