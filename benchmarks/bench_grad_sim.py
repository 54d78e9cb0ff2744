"""Cost of a gradient-similarity measurement (``--grad-sim-interval``) against plain forward+backward passes.

One measurement draws two probes per language and runs one forward and backward pass per
probe micro-batch.  This script times, on the same model and micro-batches:

* ``probe``: ``GradientSimilarityProbe.measure`` (drawing and collating the probes, the
  passes, accumulating the flat gradients, the Gram matrices and similarities);
* ``plain``: the same micro-batches, already collated, through the criterion and a plain
  ``loss.backward()`` (what the probe's passes cost at the least);
* ``plain+collate``: the same, collating each micro-batch first (as the probe must);
* ``off``: what a training step pays for the hook when the analysis is off (the check
  ``task._grad_sim_interval > 0``), per call.

Usage: ``python benchmarks/bench_grad_sim.py [--config tiny|medium] [--sentences N] [--repeats R]``
(one CPU thread by default; prints a table and, with ``--json FILE``, writes the numbers).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import xlint.user_dir  # noqa: F401  (registers the task and model)
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from xlint.preprocess.synthetic_corpus import CorpusSpec, build_synthetic_corpus
from xlint.user_dir.tasks.grad_sim_probe import probe_rows

CONFIGS = {
    # name: (words per language, layers, dim, ffn, heads)
    "tiny": (16, 2, 64, 128, 4),
    "medium": (4000, 4, 256, 1024, 4),
}


def build(config: str, sentences: int, root: Path):
    words, layers, dim, ffn, heads = CONFIGS[config]
    spec = CorpusSpec.numbered(["fr", "en"], words, {"train": max(2 * sentences, 400), "valid": 16}, seed=3,
                               length=(8, 30))
    data = build_synthetic_corpus(spec, root / "DATA")
    argv = [str(data.path), "--user-dir", str(Path(xlint.user_dir.__file__).parent), "--task", "xlm_mlm",
            "--arch", "xlm_adapter_tiny", "--encoder-layers", str(layers), "--encoder-embed-dim", str(dim),
            "--encoder-ffn-embed-dim", str(ffn), "--encoder-attention-heads", str(heads),
            "--criterion", "masked_lm", "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "32",
            "--tokens-per-sample", "64", "--sample-break-mode", "eos", "--seed", "1", "--cpu",
            "--language-specific", "joint", "--grad-sim-sentences", str(sentences), "--grad-sim-interval", "10"]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    model = task.build_model(cfg.model)
    return task, model, task.build_criterion(cfg.criterion)


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--sentences", type=int, default=256, help="sentences per probe")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        task, model, criterion = build(args.config, args.sentences, Path(tmp))
        probe = task.gradient_similarity_probe()
        probe.dataset.set_epoch(1)
        update = 0
        batches = [probe.micro_batches(probe_rows(probe.candidate_rows(i), args.sentences, 1, update, i, k))
                   for i in range(len(task.languages)) for k in (0, 1)]
        flat_batches = [b for group in batches for b in group]
        collated = [probe.collate(b) for b in flat_batches]
        model.train()

        def plain(samples):
            for sample in samples:
                loss, _, _ = criterion(model, sample)
                loss.backward()
            model.zero_grad(set_to_none=True)

        probe.measure(model, criterion, update)  # warm-up (layout, caches)
        plain(collated[:2])
        t_probe = median_seconds(lambda: probe.measure(model, criterion, update), args.repeats)
        t_plain = median_seconds(lambda: plain(collated), args.repeats)
        t_collate = median_seconds(lambda: plain([probe.collate(b) for b in flat_batches]), args.repeats)
        calls = 1_000_000
        start = time.perf_counter()
        for _ in range(calls):
            task._grad_sim_interval > 0  # noqa: B015 - what train_step evaluates when the analysis is off
        checked = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(calls):
            pass
        t_off = max(0.0, checked - (time.perf_counter() - start)) / calls
        shared = sum(p.numel() for _, p in model.shared_parameters())
    result = {
        "config": args.config, "threads": args.threads, "sentences_per_probe": args.sentences,
        "probes": len(batches), "micro_batches": len(flat_batches), "shared_parameters": shared,
        "probe_s": t_probe, "plain_fwd_bwd_s": t_plain, "plain_fwd_bwd_with_collate_s": t_collate,
        "probe_over_plain": t_probe / t_plain, "probe_over_plain_with_collate": t_probe / t_collate,
        "off_check_ns_per_step": t_off * 1e9,
    }
    print(f"config {args.config}: {shared:,} shared parameters, {len(batches)} probes of {args.sentences} "
          f"sentences, {len(flat_batches)} micro-batches, {args.threads} thread(s), median of {args.repeats}")
    print(f"  probe measurement          {t_probe:8.3f} s")
    print(f"  plain forward+backward     {t_plain:8.3f} s   (probe / plain = {t_probe / t_plain:.3f})")
    print(f"  plain + collating batches  {t_collate:8.3f} s   (probe / this  = {t_probe / t_collate:.3f})")
    print(f"  analysis off: {t_off * 1e9:.0f} ns per training step (one int comparison)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
