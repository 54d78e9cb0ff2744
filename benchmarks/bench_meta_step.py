"""Step time and peak memory of ``meta_mlm`` (finite-difference, exact) against plain ``xlm_mlm``.

All three configurations train the same adapter model (two languages) on the same
batches, side by side in one invocation; each runs in its own subprocess so that peak
memory (max RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU) is its own.

    python benchmarks/bench_meta_step.py                      # CPU, paper-shaped layers, small vocab
    python benchmarks/bench_meta_step.py --device cuda --arch xlm_adapter_paper --tokens 8192

Goals (issue): finite-difference <= 4x the plain step time and <= 1.3x its peak memory.
"""
import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "plain xlm_mlm (+adapt)": ["--task", "xlm_mlm"],
    "meta_mlm finite-difference": ["--task", "meta_mlm", "--meta-second-order", "finite-difference"],
    "meta_mlm forward-difference": ["--task", "meta_mlm", "--meta-fd-scheme", "forward"],
    "meta_mlm forward-difference, half-size meta-dev batches": ["--task", "meta_mlm", "--meta-fd-scheme",
                                                                "forward", "--meta-dev-max-tokens", "HALF"],
    "meta_mlm exact": ["--task", "meta_mlm", "--meta-second-order", "exact"],
}


def make_data(root: Path, vocab: int, sentences: int) -> Path:
    """Synthetic two-language corpus binarized with fairseq-preprocess (Zipf-like word draws)."""
    from fairseq import options
    from fairseq_cli import preprocess

    rng = random.Random(0)
    raw = root / "raw"
    raw.mkdir(parents=True)
    weights = [1.0 / (rank + 1) for rank in range(vocab)]
    for lang in ("aa", "bb"):
        words = [f"{lang}{i}" for i in range(vocab)]
        for split, count in (("train", sentences), ("valid", 64), ("metadev", 256)):
            lines = (" ".join(rng.choices(words, weights, k=rng.randint(20, 60))) for _ in range(count))
            (raw / f"{lang}.{split}").write_text("\n".join(lines) + "\n")
    (raw / "all").write_text((raw / "aa.train").read_text() + (raw / "bb.train").read_text())
    data = root / "data"
    parser = options.get_preprocessing_parser()
    preprocess.main(parser.parse_args(["--only-source", "--trainpref", str(raw / "all"), "--destdir",
                                       str(root / "dict"), "--workers", "1"]))
    for lang in ("aa", "bb"):
        preprocess.main(parser.parse_args([
            "--only-source", "--srcdict", str(root / "dict" / "dict.txt"), "--trainpref", str(raw / f"{lang}.train"),
            "--validpref", f"{raw / f'{lang}.valid'},{raw / f'{lang}.metadev'}", "--destdir", str(data / lang),
            "--workers", "1"]))
        for ext in ("bin", "idx"):
            (data / lang / f"valid1.{ext}").rename(data / lang / f"metadev.{ext}")
    (data / "dict.txt").write_text((root / "dict" / "dict.txt").read_text())
    (data / "metadata.json").write_text(json.dumps({"languages": ["aa", "bb"]}))
    return data


def measure(args) -> dict:
    """Runs in a child process: warm-up, then timed train steps on a fixed batch sequence."""
    import torch
    from fairseq import criterions, optim, options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    import xlint.user_dir  # noqa: F401

    torch.manual_seed(0)
    argv = [args.data, "--user-dir", str(REPO / "user_dir"), "--arch", args.arch, "--language-specific", "adapter",
            "--criterion", "masked_lm", "--optimizer", "adam", "--lr", "1e-4", "--max-tokens", str(args.tokens),
            "--tokens-per-sample", "128", "--sample-break-mode", "none", "--seed", "1",
            *(["--cpu"] if args.device == "cpu" else []),
            *[str(args.tokens // 2) if a == "HALF" else a for a in json.loads(args.config)]]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    device = torch.device(args.device)
    model = task.build_model(cfg.model).to(device)
    criterion = criterions.build_criterion(cfg.criterion, task).to(device)
    optimizer = optim.build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    optimizer.set_lr(1e-4)
    iterator = task.get_batch_iterator(task.datasets["train"], max_tokens=args.tokens, seed=1).next_epoch_itr(shuffle=False)
    batches = [next(iterator) for _ in range(args.warmup + args.steps)]
    if device.type == "cuda":
        batches = [utils.move_to_cuda(b) for b in batches]
    times = []
    for step, sample in enumerate(batches):
        if device.type == "cuda":
            torch.cuda.synchronize()
            if step == args.warmup:
                torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        optimizer.zero_grad()
        task.train_step(sample, model, criterion, optimizer, update_num=step)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"median_step_s": statistics.median(times), "min_step_s": min(times), "peak_bytes": peak,
            "parameters": sum(p.numel() for p in model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--arch", default="xlm_adapter_tiny")
    parser.add_argument("--tokens", type=int, default=2048, help="--max-tokens per batch")
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.config:  # child
        print(json.dumps(measure(args)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp), args.vocab, sentences=(args.steps + args.warmup) * args.tokens // 30)
        results = {}
        for name, extra in CONFIGS.items():
            child = [sys.executable, __file__, "--data", str(data), "--config", json.dumps(extra),
                     "--device", args.device, "--arch", args.arch, "--tokens", str(args.tokens),
                     "--steps", str(args.steps), "--warmup", str(args.warmup)]
            proc = subprocess.run(child, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
            if proc.returncode != 0:
                sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    base = results["plain xlm_mlm (+adapt)"]
    print(f"\n{args.arch} on {args.device}, {args.tokens} tokens per batch, L = 2, {args.steps} timed steps\n")
    print("| configuration | median step (ms) | x plain | peak memory (MiB) | x plain |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {1000 * r['median_step_s']:.1f} | {r['median_step_s'] / base['median_step_s']:.2f} "
              f"| {r['peak_bytes'] / 2**20:.0f} | {r['peak_bytes'] / base['peak_bytes']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
