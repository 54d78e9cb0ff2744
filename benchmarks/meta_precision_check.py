#!/usr/bin/env python
"""The meta-gradient of ``meta_mlm`` under each training precision against fp32, on the same batches.

For every second-order mode and every precision (``fp16`` and ``bf16``: the model's
weights in half precision, as ``--fp16``/``--bf16`` make them; ``amp``: fp32 weights
inside an autocast region, as ``--amp`` runs the task) one meta step is taken from the
same weights, batch, meta-dev batches and random state as an fp32 reference, and the
phi update it makes is compared (cosine, relative error), with the fraction of theta's
elements that the virtual step and the eps-step changed.  Dropout is on.

    python benchmarks/meta_precision_check.py                                 # CPU, tiny model
    python benchmarks/meta_precision_check.py --device cuda --arch xlm_adapter_paper --out p.json

A script, not a test (tests/test_meta_mlm.py holds the CPU assertions).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

MODES = ("hvp", "finite-difference", "exact", "first-order")
PRECISIONS = ("fp16", "bf16", "amp")


def build(data: Path, arch: str, mode: str, device: str, tokens: int):
    import torch
    from fairseq import options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    import xlint.user_dir  # noqa: F401

    argv = [str(data), "--user-dir", str(REPO / "user_dir"), "--task", "meta_mlm", "--arch", arch,
            "--language-specific", "adapter", "--criterion", "masked_lm", "--optimizer", "adam", "--lr", "1e-4",
            "--max-tokens", str(tokens), "--tokens-per-sample", "128", "--sample-break-mode", "none",
            "--meta-second-order", mode, "--meta-phi-optimizer", "sgd", "--meta-phi-lr", "1", "--seed", "1",
            *(["--cpu"] if device == "cpu" else [])]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    torch.manual_seed(0)
    model = task.build_model(cfg.model).to(device)
    with torch.no_grad():  # adapters away from their near-identity init
        for lang in task.languages:
            for _, p in model.language_parameters(lang):
                p.add_(torch.randn_like(p) * 0.02)
        for p in model.parameters():  # weights that every precision represents exactly
            p.copy_(p.to(torch.bfloat16).float())
    iterator = task.get_batch_iterator(task.datasets["train"], max_tokens=tokens, seed=1).next_epoch_itr(shuffle=False)
    sample = next(iterator)
    if device == "cuda":
        sample = utils.move_to_cuda(sample)
    return task, model, sample


def phi_update(task, model, sample, precision: str, rng_state, beta: float):
    """The phi change (-meta-gradient at SGD lr 1) and the step's statistics."""
    import torch

    lang_index = sample["language"]
    lang = task.languages[lang_index]
    before = [p.detach().float().clone() for _, p in model.language_parameters(lang)]
    torch.set_rng_state(rng_state)
    if model.encoder.embed_tokens.weight.is_cuda:
        torch.cuda.manual_seed(0)
    autocast = (torch.autocast(device_type=sample["target"].device.type, dtype=torch.bfloat16)
                if precision == "amp" else contextlib.nullcontext())
    model.train()
    started = time.perf_counter()
    with autocast:
        stats = task.meta_step(model, sample, lang_index, scheduled_lr=beta, ignore_grad=False)
    seconds = time.perf_counter() - started
    masters = task._masters_of(model, lang)
    return torch.cat([(b - m).reshape(-1) for b, m in zip(before, masters)]), stats, seconds


def check(data: Path, args) -> list:
    import torch
    import torch.nn.functional as F

    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
    rows = []
    for mode in args.modes.split(","):
        task, model, sample = build(data, args.arch, mode, args.device, args.tokens)
        rng_state = torch.get_rng_state()
        reference, ref_stats, ref_seconds = phi_update(task, model, sample, "fp32", rng_state, args.beta)
        rows.append({"mode": mode, "precision": "fp32", "cosine": 1.0, "relative_error": 0.0,
                     "seconds": ref_seconds, **_changed(ref_stats)})
        for precision in args.precisions.split(","):
            task, model, sample = build(data, args.arch, mode, args.device, args.tokens)  # the same weights
            if precision in dtypes:
                model = model.to(dtypes[precision])
            got, stats, seconds = phi_update(task, model, sample, precision, rng_state, args.beta)
            rows.append({
                "mode": mode, "precision": precision,
                "cosine": float(F.cosine_similarity(got.double(), reference.double(), dim=0)),
                "relative_error": float((got - reference).norm() / reference.norm().clamp_min(1e-30)),
                "seconds": seconds, **_changed(stats)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def _changed(stats: dict) -> dict:
    return {"virtual_changed": stats.get("meta_virtual_changed"), "fd_changed": stats.get("meta_fd_changed"),
            "second_order_norm": stats.get("meta_second_order_norm")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--arch", default="xlm_adapter_tiny")
    parser.add_argument("--tokens", type=int, default=1024, help="--max-tokens of the training batch")
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--beta", type=float, default=1e-4, help="the virtual step's size (the paper's lr)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--out", type=Path, help="write the rows as JSON")
    args = parser.parse_args()
    from bench_meta_step import make_data

    with tempfile.TemporaryDirectory() as tmp:
        rows = check(make_data(Path(tmp), args.vocab, sentences=200), args)
    print(f"\nmeta-gradient against fp32, {args.arch} on {args.device}, beta = {args.beta}\n")
    print("| mode | precision | cosine | relative error | theta changed by the virtual step | by +eps v |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        fd = "" if r["fd_changed"] is None else f"{r['fd_changed']:.3f}"
        virtual = "" if r["virtual_changed"] is None else f"{r['virtual_changed']:.3f}"
        print(f"| {r['mode']} | {r['precision']} | {r['cosine']:.5f} | {r['relative_error']:.2e} | {virtual} | {fd} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
