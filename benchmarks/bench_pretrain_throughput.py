#!/usr/bin/env python
"""Pretraining throughput: xlint's ``xlm_adapter`` versus fairseq's own ``roberta``.

Measures fairseq's training ``wps`` (tokens per second, from ``--log-format json``
``train_inner`` lines) and, on CPU, tokens per process CPU-second of

* ``roberta``  -- ``--task masked_lm --arch roberta`` (fairseq's reference),
* ``joint``    -- ``--task xlm_mlm --arch xlm_adapter --language-specific joint``
  on one language (the same text as ``roberta``),
* ``adapter``  -- ``--language-specific adapter`` on two languages
  (also ``ffn``, ``attn``, ``shared_adapter`` with ``--variants``),

at one model shape, with one optimizer, batch, dropout and seed, on data binarized
once.  Runs are separate ``fairseq-train`` processes.  By default the runs of a
repeat (one per variant) are alive together and take turns of one log interval
each, so the intervals of a round run one right after the other.  Warm-up intervals
are dropped; each ratio is the median of the paired interval ratios variant/roberta,
reported with its interquartile range and min..max.

Issue goals: joint >= 0.97 x roberta, adapter >= 0.85 x roberta.

This is a script, not a test::

    python benchmarks/bench_pretrain_throughput.py                       # CPU, ~6 min on 2 cores
    python benchmarks/bench_pretrain_throughput.py --device cuda --fp16 \\
        --layers 8 --dim 512 --max-tokens 16384 --updates 200 --repeats 3

The pieces live in ``benchmarks/throughput/`` (one job per module); see benchmarks/README.md.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from throughput.worker import WORKER_FLAG, train_worker


def run_environment(threads: int, device: str) -> Dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def main(argv: Optional[Sequence[str]] = None) -> int:
    # imported here: the worker mode must import fairseq_cli.train before anything imports fairseq
    from throughput.commands import train_command
    from throughput.data import BenchData, build_data
    from throughput.params import parameter_report
    from throughput.report import markdown, result_json
    from throughput.runs import log_progress, run_all
    from throughput.settings import GOALS, build_parser, parse_args
    from throughput.stats import summarize

    args = parse_args(argv, build_parser(__doc__.split("\n\n")[0]))
    if args.dry_run:
        data = BenchData.under(args.workdir or Path("WORKDIR"))
        for variant in args.variant_list:
            print(f"# {variant}\n" + shlex.join(train_command(variant, data, args)))
        return 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="xlint-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    log_progress(f"[bench] work dir {work}; binarizing {len(args.language_list)} x {args.train_tokens:,} words")
    data = build_data(work, args)
    prep_s = time.perf_counter() - t0

    commands: Dict[str, List[str]] = {v: train_command(v, data, args) for v in args.variant_list}
    params = {} if args.skip_param_report else {v: parameter_report(v, data, args) for v in args.variant_list}
    runs, schedules = run_all(commands, args.variant_list, work, run_environment(args.threads, args.device),
                              args.repeats, args.interleave, args.warmup_updates)
    goal_key = "cpu_ratio" if args.device == "cpu" else "ratio"
    summary = summarize(runs, args.warmup_updates, GOALS, goal_key)
    report = markdown(args, runs, summary, params)
    print(report)

    result = result_json(args, commands, schedules, params, runs, summary, prep_s, time.perf_counter() - t0, report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
        log_progress(f"[bench] wrote {args.out}")
    log_progress(f"[bench] total {result['total_s']} s (data {result['prep_s']} s); logs under {work}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    missed = [v for v, e in summary.items() if e.get("meets_goal") is False]
    if args.check and missed:
        log_progress(f"[bench] goal missed by: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == WORKER_FLAG:
        train_worker(sys.argv[2:])
    else:
        sys.exit(main())
