#!/usr/bin/env python
"""Where a training step's time goes, per variant: forward, backward, gradient scaling and clipping, optimizer.

Builds each variant of ``bench_pretrain_throughput.py`` in-process from the same
``fairseq-train`` arguments (shape, task, masked_lm criterion, Adam) on the same data,
and runs fairseq's training step in its phases:

* ``forward``   -- the criterion call (model forward and loss), timed by hooks on the criterion;
* ``backward``  -- the rest of ``task.train_step`` (``loss.backward()`` and the task's bookkeeping);
* ``clip``      -- ``multiply_grads(1 / sample_size)`` and ``clip_grad_norm``, as fairseq's trainer;
* ``optimizer`` -- ``task.optimizer_step`` (xlm_mlm: clearing absent languages' gradients, then Adam);
* ``zero_grad``.

Every phase is timed with the process CPU clock (one thread by default), one step of
every variant per round, the order rotated every round.  The report gives each phase's
median per variant, the extra milliseconds of each variant against roberta per phase,
and the ratio of whole steps next to the ratio that the matrix multiplications alone
predict (multiply-adds per token of each model).  ``--op-table N`` adds torch.profiler's
operators (self CPU time over a few profiled steps) where a variant spends the most
more than roberta.

    python benchmarks/profile_train_step.py                          # the benchmark's default shape
    python benchmarks/profile_train_step.py --variants adapter --steps 30 --op-table 15

A script, not a test.  See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from throughput.commands import cpu_only, fairseq_argv
from throughput.data import build_data
from throughput.params import quiet_fairseq
from throughput.settings import build_parser, parse_args
from throughput.stats import spread

PHASES = ("forward", "backward", "clip", "optimizer", "zero_grad")


class CriterionClock:
    """CPU seconds spent inside the criterion's forward (the model forward and the loss)."""

    def __init__(self, criterion) -> None:
        self.seconds = 0.0
        self._start = 0.0
        criterion.register_forward_pre_hook(self._enter)
        criterion.register_forward_hook(self._leave)

    def _enter(self, module, inputs) -> None:
        self._start = time.process_time()

    def _leave(self, module, inputs, outputs) -> None:
        self.seconds += time.process_time() - self._start


@dataclass
class Trainee:
    """One variant built in-process: task, model, criterion, optimizer and its batches."""

    variant: str
    task: object
    model: object
    criterion: object
    optimizer: object
    batches: List[dict]
    parameters: int
    tensors: int
    clock: CriterionClock
    #: per phase, the CPU seconds of every timed step
    seconds: Dict[str, List[float]] = field(default_factory=lambda: {phase: [] for phase in PHASES})


def build_trainee(variant: str, argv: List[str], steps: int, seed: int) -> Trainee:
    import torch
    from fairseq import criterions, optim, options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    torch.manual_seed(seed)
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    model = task.build_model(cfg.model)
    criterion = criterions.build_criterion(cfg.criterion, task)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = optim.build_optimizer(cfg.optimizer, params)
    optimizer.set_lr(cfg.optimization.lr[0])
    iterator = task.get_batch_iterator(task.dataset("train"), max_tokens=cfg.dataset.max_tokens,
                                       max_positions=model.max_positions(), seed=seed).next_epoch_itr(shuffle=False)
    batches = [next(iterator) for _ in range(steps)]
    return Trainee(variant, task, model, criterion, optimizer, batches,
                   sum(p.numel() for p in params), len(params), CriterionClock(criterion))


def train_step_phases(trainee: Trainee, sample: dict, update: int) -> Dict[str, float]:
    """One update of fairseq's trainer (one micro-batch, one process), phase by phase, in CPU seconds."""
    out: Dict[str, float] = {}
    start = time.process_time()
    trainee.optimizer.zero_grad()
    out["zero_grad"] = time.process_time() - start

    trainee.clock.seconds = 0.0
    start = time.process_time()
    trainee.model.train()
    trainee.model.set_num_updates(update)
    _, sample_size, _ = trainee.task.train_step(sample, trainee.model, trainee.criterion, trainee.optimizer, update)
    train_step = time.process_time() - start
    out["forward"], out["backward"] = trainee.clock.seconds, train_step - trainee.clock.seconds

    start = time.process_time()
    trainee.optimizer.multiply_grads(1.0 / float(sample_size))
    trainee.optimizer.clip_grad_norm(1.0)
    out["clip"] = time.process_time() - start

    start = time.process_time()
    trainee.task.optimizer_step(trainee.optimizer, trainee.model, update)
    out["optimizer"] = time.process_time() - start
    return out


def run_rounds(trainees: Sequence[Trainee], warmup: int, steps: int) -> None:
    """One step of every variant per round, the order rotated every round; warm-up steps are not kept."""
    for step in range(warmup + steps):
        shift = step % len(trainees)
        for trainee in [*trainees[shift:], *trainees[:shift]]:
            phases = train_step_phases(trainee, trainee.batches[step], step)
            if step >= warmup:
                for phase, seconds in phases.items():
                    trainee.seconds[phase].append(seconds)


def step_seconds(trainee: Trainee) -> List[float]:
    return [sum(values) for values in zip(*(trainee.seconds[phase] for phase in PHASES))]


def matmul_macs_per_token(args: argparse.Namespace, variant: str, vocab: int, mask_prob: float = 0.15) -> float:
    """Multiply-adds per token of the forward's matrix products (the backward costs twice as much).

    Per layer: attention projections 4 d^2, attention scores and values 2 T d, FFN 2 d f,
    adapters (``adapter``/``shared_adapter``) 2 x 2 d b with b = d/4; the LM head
    (d^2 + V d) on the masked tokens only.
    """
    d, f, t = args.dim, args.ffn_dim, args.tokens_per_sample
    per_layer = 4 * d * d + 2 * t * d + 2 * d * f
    if variant in ("adapter", "shared_adapter"):
        per_layer += 2 * 2 * d * (d // 4)
    return args.layers * per_layer + mask_prob * (d * d + vocab * d)


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def phase_report(trainees: Sequence[Trainee], args: argparse.Namespace, vocab: int) -> List[str]:
    base = trainees[0]
    lines = ["| variant | params | tensors | " + " | ".join(f"{p} ms" for p in PHASES)
             + " | step ms | step ratio vs roberta, median (IQR) | matmul-predicted ratio |",
             "|---|---:|---:|" + "---:|" * len(PHASES) + "---:|---:|---:|"]
    base_steps = step_seconds(base)
    base_macs = matmul_macs_per_token(args, base.variant, vocab)
    for trainee in trainees:
        steps = step_seconds(trainee)
        ratio = spread([b / s for b, s in zip(base_steps, steps)])  # throughput: roberta's step time / this one's
        predicted = base_macs / matmul_macs_per_token(args, trainee.variant, vocab)
        lines.append(f"| {trainee.variant} | {trainee.parameters:,} | {trainee.tensors} | "
                     + " | ".join(ms(statistics.median(trainee.seconds[p])) for p in PHASES)
                     + f" | {ms(statistics.median(steps))} | {ratio['median']:.3f} "
                     f"({ratio['q1']:.3f}..{ratio['q3']:.3f}) | {predicted:.3f} |")
    lines += ["", "Extra milliseconds per step against roberta (medians of the paired differences):", "",
              "| variant | " + " | ".join(PHASES) + " | step |", "|---|" + "---:|" * (len(PHASES) + 1)]
    for trainee in trainees[1:]:
        cells = [ms(statistics.median(a - b for a, b in zip(trainee.seconds[p], base.seconds[p]))) for p in PHASES]
        total = ms(statistics.median(a - b for a, b in zip(step_seconds(trainee), base_steps)))
        lines.append(f"| {trainee.variant} | " + " | ".join(cells) + f" | {total} |")
    return lines


def operator_seconds(trainee: Trainee, steps: int) -> Dict[str, float]:
    """Self CPU seconds per operator over ``steps`` profiled training steps."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for step in range(steps):
            train_step_phases(trainee, trainee.batches[step], step)
    return {event.key: event.self_cpu_time_total / 1e6 for event in prof.key_averages()}


def operator_report(trainees: Sequence[Trainee], steps: int, top: int) -> List[str]:
    per_variant = {t.variant: operator_seconds(t, steps) for t in trainees}
    base = per_variant[trainees[0].variant]
    lines = []
    for trainee in trainees[1:]:
        ops = per_variant[trainee.variant]
        extra = sorted(((ops.get(k, 0.0) - base.get(k, 0.0), k) for k in set(ops) | set(base)), reverse=True)
        lines += ["", f"Operators where {trainee.variant} spends the most more than roberta "
                      f"(self CPU ms per step, {steps} profiled steps):", "",
                  f"| operator | roberta | {trainee.variant} | extra |", "|---|---:|---:|---:|"]
        for difference, key in extra[:top]:
            lines.append(f"| `{key}` | {ms(base.get(key, 0.0) / steps)} | {ms(ops.get(key, 0.0) / steps)} | "
                         f"{ms(difference / steps)} |")
        lines.append(f"| all operators | {ms(sum(base.values()) / steps)} | {ms(sum(ops.values()) / steps)} | "
                     f"{ms((sum(ops.values()) - sum(base.values())) / steps)} |")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps per variant first")
    parser.add_argument("--op-table", type=int, default=0, metavar="N",
                        help="also profile 3 steps per variant with torch.profiler: the N operators with the "
                             "most extra self CPU time against roberta")
    args = parse_args(argv, parser)
    total_steps = args.warmup_steps + args.steps
    args.train_tokens = args.train_tokens or int(total_steps * args.max_tokens * 1.3) + 20 * args.tokens_per_sample
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    quiet_fairseq()
    with tempfile.TemporaryDirectory(prefix="xlint-profile-") as tmp:
        work = args.workdir or Path(tmp)
        data = build_data(work, args)
        trainees = [build_trainee(v, cpu_only(fairseq_argv(v, data, args)), total_steps, args.seed)
                    for v in args.variant_list]
        vocab = len(trainees[0].task.source_dictionary)
        start = time.perf_counter()
        run_rounds(trainees, args.warmup_steps, args.steps)
        lines = [f"## Training step phases, {args.layers} layers, d={args.dim}, --max-tokens {args.max_tokens}, "
                 f"vocabulary {vocab:,}, {args.threads or 'default'} thread(s); {args.steps} timed steps per variant "
                 f"after {args.warmup_steps}, process CPU time, medians", ""]
        lines += phase_report(trainees, args, vocab)
        if args.op_table:
            lines += operator_report(trainees, min(3, total_steps), args.op_table)
    print("\n".join(lines))
    print(f"[profile] {time.perf_counter() - start:.0f} s of steps", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
