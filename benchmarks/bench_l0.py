"""Words/s of L0 mask training against plain MLM training of the same model, on the same batches (CPU).

Both loops run in this process over one list of training batches of the ``l0_mlm`` task (one
language of DATA): forward, backward and an Adam step, repeated in alternating rounds.

* ``mlm``: fairseq's ``masked_lm`` criterion, Adam over every model parameter (what pretraining does);
* ``l0``: the ``l0_hard_concrete`` criterion on the frozen model, Adam over the gates only.

Words/s counts the batches' ``ntokens``.  Measurements only, no assertions.

    .venv/bin/python benchmarks/bench_l0.py                       # the demo's joint model, tr
    .venv/bin/python benchmarks/bench_l0.py --checkpoint CKPT --data DATA --language en --threads 1
"""
from __future__ import annotations

import argparse
import copy
import glob
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def default(pattern: str) -> str:
    found = sorted(glob.glob(str(REPO / pattern)))
    return found[0] if found else ""


def setup(data: str, checkpoint: str, language: str, batch_size: int, attention_gates: str, ffn_gates: str):
    import xlint.user_dir  # noqa: F401  (registers the plugin)
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        data, "--task", "l0_mlm", "--languages", language, "--pretrained-checkpoint", checkpoint,
        "--arch", "xlm_adapter", "--criterion", "l0_hard_concrete", "--attention-gates", attention_gates,
        "--ffn-gates", ffn_gates, "--batch-size", str(batch_size), "--cpu", "--optimizer", "adam",
        "--tokens-per-sample", "128", "--sample-break-mode", "eos", "--seed", "1"])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    task.load_dataset("train")
    return task, model, criterion


def batches_of(task, count: int, batch_size: int):
    itr = task.get_batch_iterator(task.dataset("train"), max_sentences=batch_size, seed=1,
                                  max_positions=128, ignore_invalid_inputs=True).next_epoch_itr(shuffle=False)
    out = []
    for sample in itr:
        out.append(sample)
        if len(out) == count:
            break
    return out


def time_loop(criterion, model, optimizer, batches) -> float:
    start = time.perf_counter()
    for sample in batches:
        optimizer.zero_grad(set_to_none=True)
        loss, _, _ = criterion(model, sample)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=default("demo-runs/runs/joint-*/checkpoints/checkpoint_best.pt"))
    parser.add_argument("--data", default=default("demo-runs/corpus-*"))
    parser.add_argument("--language", default="tr")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20, help="batches per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--attention-gates", default="row")
    parser.add_argument("--ffn-gates", default="row")
    args = parser.parse_args()
    if not args.checkpoint or not args.data:
        parser.error("give --checkpoint and --data (the demo's joint model was not found)")
    torch.set_num_threads(args.threads)
    from fairseq.criterions.masked_lm import MaskedLmConfig, MaskedLmLoss

    task, frozen, l0_criterion = setup(args.data, args.checkpoint, args.language, args.batch_size,
                                       args.attention_gates, args.ffn_gates)
    trainable = copy.deepcopy(frozen).requires_grad_(True)
    mlm_criterion = MaskedLmLoss(MaskedLmConfig(tpu=False), task)
    frozen.train()
    trainable.train()
    batches = batches_of(task, args.batches, args.batch_size)
    words = sum(int(b["ntokens"]) for b in batches)
    runs = {
        "mlm": (mlm_criterion, trainable, torch.optim.Adam(trainable.parameters(), lr=1e-4)),
        "l0": (l0_criterion, frozen, torch.optim.Adam(l0_criterion.parameters(), lr=0.05)),
    }
    for criterion, model, optimizer in runs.values():  # warm-up
        time_loop(criterion, model, optimizer, batches[:2])
    seconds = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (criterion, model, optimizer) in runs.items():
            seconds[name].append(time_loop(criterion, model, optimizer, batches))
    params = sum(p.numel() for p in frozen.parameters())
    print(f"model: {args.checkpoint} ({params} parameters), language {args.language}, "
          f"{l0_criterion.layout.num_gates} gates ({args.attention_gates}/{args.ffn_gates}), "
          f"{len(batches)} batches x {args.rounds} rounds, {words} words per round, {args.threads} thread(s)")
    wps = {name: [words / s for s in values] for name, values in seconds.items()}
    for name, values in wps.items():
        print(f"{name:>4}: {statistics.median(values):9.0f} words/s (rounds: {', '.join(f'{v:.0f}' for v in values)})")
    ratios = [a / b for a, b in zip(wps["l0"], wps["mlm"])]
    print(f"l0 / mlm: {statistics.median(ratios):.3f} (median of paired rounds; min {min(ratios):.3f}, "
          f"max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
