"""Step time and peak memory of ``meta_mlm`` (each second-order mode) against plain ``xlm_mlm``.

All configurations train the same adapter model (two languages) on the same
batches, side by side in one invocation; each runs in its own subprocess so that peak
memory (max RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU) is its own.

    python benchmarks/bench_meta_step.py                      # CPU, paper-shaped layers, small vocab
    python benchmarks/bench_meta_step.py --device cuda --arch xlm_adapter_paper --tokens 8192

Each ratio is also divided by the number of network passes the configuration needs (a
pass: one forward and one backward; a double backward counts as one more pass), the
physical floor: "x plain / passes" near 1 means no overhead above the algorithm's passes.
With L = 2 meta-dev languages: plain 1; first-order L+2; finite-difference central L+4,
forward L+3; hvp L+3 (the virtual step's backward keeps its graph, then one double backward);
exact L+4.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xlint.preprocess.synthetic_corpus import CorpusSpec, build_synthetic_corpus

REPO = Path(__file__).resolve().parents[1]
LANGUAGES = 2
#: name -> (extra fairseq-train options, network passes per update)
CONFIGS = {
    "plain xlm_mlm (+adapt)": (["--task", "xlm_mlm"], 1),
    "meta_mlm hvp": (["--task", "meta_mlm", "--meta-second-order", "hvp"], LANGUAGES + 3),
    "meta_mlm finite-difference, central (default)": (
        ["--task", "meta_mlm", "--meta-second-order", "finite-difference"], LANGUAGES + 4),
    "meta_mlm finite-difference, forward": (["--task", "meta_mlm", "--meta-second-order", "finite-difference",
                                             "--meta-fd-scheme", "forward"], LANGUAGES + 3),
    "meta_mlm first-order": (["--task", "meta_mlm", "--meta-second-order", "first-order"], LANGUAGES + 2),
    "meta_mlm exact": (["--task", "meta_mlm", "--meta-second-order", "exact"], LANGUAGES + 4),
}


def make_data(root: Path, vocab: int, sentences: int) -> Path:
    """Synthetic two-language corpus (Zipf word draws, 20-60 words a sentence) in the xlm_mlm layout."""
    spec = CorpusSpec.numbered(["aa", "bb"], vocab, {"train": sentences, "valid": 64, "metadev": 256},
                               length=(20, 60), distribution="zipf", zipf_exponent=1.0, seed=0)
    return build_synthetic_corpus(spec, root / "data").path


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
            *json.loads(args.config)]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    device = torch.device(args.device)
    model = task.build_model(cfg.model).to(device)
    criterion = criterions.build_criterion(cfg.criterion, task).to(device)
    optimizer = optim.build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    optimizer.set_lr(1e-4)
    iterator = task.get_batch_iterator(task.datasets["train"], max_tokens=args.tokens, seed=1)
    iterator = iterator.next_epoch_itr(shuffle=False)
    batches = [next(iterator) for _ in range(args.warmup + args.steps)]
    if device.type == "cuda":
        batches = [utils.move_to_cuda(b) for b in batches]
    times, cpu_times = [], []
    for step, sample in enumerate(batches):
        if device.type == "cuda":
            torch.cuda.synchronize()
            if step == args.warmup:
                torch.cuda.reset_peak_memory_stats()
        start, cpu_start = time.perf_counter(), time.process_time()
        optimizer.zero_grad()
        task.train_step(sample, model, criterion, optimizer, update_num=step)
        task.optimizer_step(optimizer, model, update_num=step)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    # on CPU (one thread per child) the process's CPU time resists other load on the machine
    step_s = statistics.median(cpu_times if device.type == "cpu" else times)
    return {"median_step_s": step_s, "median_wall_s": statistics.median(times), "min_step_s": min(times),
            "clock": "process CPU time" if device.type == "cpu" else "wall", "peak_bytes": peak,
            "parameters": sum(p.numel() for p in model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--arch", default="xlm_adapter_tiny")
    parser.add_argument("--tokens", type=int, default=2048, help="--max-tokens per batch")
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", help="comma-separated words: run the configurations whose names contain one "
                                       "(the plain baseline always runs), e.g. hvp,central")
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
        wanted = [w.strip() for w in args.only.split(",")] if args.only else None
        chosen = {name: config for i, (name, config) in enumerate(CONFIGS.items())
                  if i == 0 or wanted is None or any(w in name for w in wanted)}
        for name, (extra, _) in chosen.items():
            child = [sys.executable, __file__, "--data", str(data), "--config", json.dumps(extra),
                     "--device", args.device, "--arch", args.arch, "--tokens", str(args.tokens),
                     "--steps", str(args.steps), "--warmup", str(args.warmup)]
            env = dict(os.environ, PYTHONWARNINGS="ignore")
            if args.device == "cpu":
                env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            proc = subprocess.run(child, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    base = results["plain xlm_mlm (+adapt)"]
    print(f"\n{args.arch} on {args.device}, {args.tokens} tokens per batch, L = 2, {args.steps} timed steps "
          f"(step time: {base['clock']}, median)\n")
    print("| configuration | passes | median step (ms) | x plain | x plain / passes | peak memory (MiB) | x plain |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        ratio, passes = r["median_step_s"] / base["median_step_s"], CONFIGS[name][1]
        r.update(passes=passes, step_ratio=ratio, memory_ratio=r["peak_bytes"] / base["peak_bytes"])
        print(f"| {name} | {passes} | {1000 * r['median_step_s']:.1f} | {ratio:.2f} | {ratio / passes:.2f} "
              f"| {r['peak_bytes'] / 2**20:.0f} | {r['memory_ratio']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
