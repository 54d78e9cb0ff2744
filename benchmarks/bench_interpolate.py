"""Cost of ``xlint interpolate``: a 1D sweep of the paper's 33 points against 33 plain dev evaluations.

    python benchmarks/bench_interpolate.py CKPT [--dim 512 --layers 2 --ffn 1024] [--languages tr]

CKPT is any fine-tuned xlint checkpoint (e.g. one of the demo's, ``demo-runs/downstream/*/finetune/
*/seed1/checkpoint_best.pt``); its task, data and dictionary are kept, and three checkpoints of a
wider model (``--dim``, ``--layers``, ``--ffn``) with different random weights are written, as
fine-tuning writes them (with an Adam-sized optimizer state), so that the weights dominate memory.
Each measurement runs in its own process (one CPU thread unless ``--threads``):

* plain: load one checkpoint (``load_finetuned_model``), then 33 times score the dev split
  (``collect_predictions`` + ``task.score_items``, what ``xlint evaluate`` does per call);
* sweep 1D: :func:`xlint.cli.interpolation_sweep.run_sweep` over the paper's 33 alphas (loading,
  model building and data included);
* sweep 2D: 33 points of a plane (three anchors), for the memory bound.

Reported: wall time, the ratio sweep / plain (target <= 1.1), the number of models built (must be
1), and peak RSS above the process's RSS before loading anything, in units of one state dict S
(target: <= 3 state dicts + 1 model = 4 S; the plain process's own figure shows the overhead of
data and activations).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POINTS = 33


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_checkpoints(source: Path, out: Path, dim: int, layers: int, ffn: int) -> dict:
    import torch

    import xlint.user_dir  # noqa: F401
    from fairseq import checkpoint_utils, tasks
    from omegaconf import open_dict

    from xlint.analysis.interpolation import unique_float_names

    state = checkpoint_utils.load_checkpoint_to_cpu(str(source))
    cfg = state["cfg"]
    with open_dict(cfg):
        cfg.model.encoder_embed_dim = dim
        cfg.model.encoder_layers = layers
        cfg.model.encoder_ffn_embed_dim = ffn
        cfg.model.encoder_attention_heads = max(1, dim // 64)
    paths = []
    sizes = {}
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        task = tasks.setup_task(cfg.task)
        model = task.build_model(cfg.model)
        weights = model.state_dict()
        names = unique_float_names(weights)
        sizes["state_dict_bytes"] = sum(weights[n].numel() * weights[n].element_size() for n in names)
        sizes["parameters"] = sum(weights[n].numel() for n in names)
        moments = {n: {"exp_avg": torch.zeros_like(weights[n]), "exp_avg_sq": torch.zeros_like(weights[n])}
                   for n in names}
        saved = dict(state, model=weights, last_optimizer_state={"state": moments})
        path = out / f"wide-seed{seed}.pt"
        torch.save(saved, path)
        paths.append(str(path))
    return {"checkpoints": paths, **sizes}


def worker(kind: str, checkpoints: list, languages: list, threads: int, out: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    import xlint.user_dir  # noqa: F401
    from xlint.cli import interpolation_sweep
    from xlint.user_dir.models.xlm_adapter import XlmAdapterModel

    builds = {"n": 0}
    original_build = XlmAdapterModel.build_model.__func__

    def counting_build(cls, *args, **kwargs):
        builds["n"] += 1
        return original_build(cls, *args, **kwargs)

    XlmAdapterModel.build_model = classmethod(counting_build)
    before = rss_bytes()
    started = time.perf_counter()
    if kind == "plain":
        from xlint.cli.fairseq_runner import quiet_loggers
        from xlint.user_dir.tasks.finetune_base import collect_predictions, load_finetuned_model

        with quiet_loggers():
            state = interpolation_sweep.load_checkpoint_mmap(Path(checkpoints[0]), {})
            model, cfg, task = load_finetuned_model(state, checkpoints[0])
            task.valid_languages = languages
            dataset = task.load_dataset("valid")
            criterion = task.build_criterion(cfg.criterion)
        loaded = time.perf_counter()
        for _ in range(POINTS):
            with quiet_loggers():
                task.score_items(collect_predictions(task, model, criterion, dataset, 64, False))
        evaluated = time.perf_counter()
        result = {"load_s": loaded - started, "evaluations_s": evaluated - loaded}
    else:
        from xlint.analysis.interpolation import coarse_grid, paper_grid_1d

        if kind == "sweep1d":
            paths, alphas, alphas2 = checkpoints[:2], paper_grid_1d(), None
        else:
            paths, alphas, alphas2 = checkpoints, [-0.5, -0.25, 0.0], coarse_grid(-0.5, 1.5, 0.2)
        spec = interpolation_sweep.SweepSpec(checkpoints=[Path(p) for p in paths], out=Path(out) / kind,
                                             alphas=alphas, alphas2=alphas2, languages=languages, cpu=True,
                                             progress=False)
        summary = interpolation_sweep.run_sweep(spec)
        result = {"points": len(summary["points"])}
    result.update({"total_s": time.perf_counter() - started, "models_built": builds["n"],
                   "rss_before": before, "peak_rss": peak_bytes()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--languages", default="tr")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.spec)
        print(json.dumps(worker(args.worker, spec["checkpoints"], spec["languages"], args.threads, spec["out"])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        made = make_checkpoints(args.checkpoint, Path(tmp), args.dim, args.layers, args.ffn)
        spec = json.dumps({"checkpoints": made["checkpoints"], "languages": args.languages.split(","), "out": tmp})
        results = {}
        for kind in ("plain", "sweep1d", "sweep2d"):
            proc = subprocess.run([sys.executable, __file__, str(args.checkpoint), "--worker", kind, "--spec", spec,
                                   "--threads", str(args.threads)], stdout=subprocess.PIPE, text=True, check=True)
            results[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    size = made["state_dict_bytes"]
    plain, line, plane = results["plain"], results["sweep1d"], results["sweep2d"]
    print(f"model: {made['parameters'] / 1e6:.2f}M parameters, one state dict S = {size / 2**20:.1f} MiB; "
          f"{args.threads} thread(s); languages {args.languages}")
    print(f"plain: load {plain['load_s']:.1f}s, {POINTS} dev evaluations {plain['evaluations_s']:.1f}s "
          f"(total {plain['total_s']:.1f}s), models built {plain['models_built']}, "
          f"peak RSS above start {(plain['peak_rss'] - plain['rss_before']) / size:.2f} S")
    for name, result in (("sweep 1D", line), ("sweep 2D", plane)):
        memory = (result["peak_rss"] - result["rss_before"]) / size
        print(f"{name}: {result['points']} points in {result['total_s']:.1f}s (everything included) = "
              f"{result['total_s'] / plain['evaluations_s']:.3f}x the {POINTS} plain evaluations "
              f"({result['total_s'] / plain['total_s']:.3f}x plain with its load), models built "
              f"{result['models_built']}, peak RSS above start {memory:.2f} S "
              f"({(result['peak_rss'] - plain['peak_rss']) / size:+.2f} S over plain)")
    print(json.dumps({"state_dict_bytes": size, **results}))


if __name__ == "__main__":
    main()
