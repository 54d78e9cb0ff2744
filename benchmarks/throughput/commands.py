"""The ``fairseq-train`` command line of each variant: what they share and what sets them apart."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import List

from .data import BenchData
from .settings import VARIANTS
from .worker import WORKER_FLAG

REPO = Path(__file__).resolve().parents[2]
USER_DIR = REPO / "user_dir"
ENTRY_SCRIPT = REPO / "benchmarks" / "bench_pretrain_throughput.py"
HALF_PRECISION_FLAGS = ("--fp16", "--fp16-no-flatten-grads", "--bf16")


def shared_args(args: argparse.Namespace) -> List[str]:
    """Everything the variants share: shape, batch, optimizer, dropout, logging."""
    out = [
        "--criterion", "masked_lm",
        "--encoder-layers", str(args.layers), "--encoder-embed-dim", str(args.dim),
        "--encoder-ffn-embed-dim", str(args.ffn_dim), "--encoder-attention-heads", str(args.heads),
        "--max-positions", str(args.tokens_per_sample), "--activation-fn", "gelu",
        "--dropout", str(args.dropout), "--attention-dropout", str(args.dropout),
        "--activation-dropout", "0.0",
        "--tokens-per-sample", str(args.tokens_per_sample), "--sample-break-mode", args.sample_break_mode,
        "--max-tokens", str(args.max_tokens), "--update-freq", "1",
        "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-6", "--weight-decay", "0.01",
        "--lr", "5e-4", "--lr-scheduler", "polynomial_decay", "--warmup-updates", str(max(1, args.updates // 4)),
        "--total-num-update", str(args.updates), "--clip-norm", "1.0",
        "--max-update", str(args.updates), "--seed", str(args.seed),
        "--num-workers", str(args.num_workers),
        "--log-format", "json", "--log-interval", str(args.log_interval),
        "--no-save", "--disable-validation",
    ]
    if args.device == "cpu":
        out.append("--cpu")
    elif args.fp16:  # per-parameter fp32 masters: xlm_mlm refuses flat fp16 with language-specific modules
        out += ["--fp16", "--fp16-no-flatten-grads"]
    return out + shlex.split(args.extra_args)


def variant_args(variant: str, data: BenchData, languages: List[str]) -> List[str]:
    """The data folder, task and architecture of one variant."""
    if variant == "roberta":
        # --untie-weights-roberta is off by default (LM head tied to the embeddings, as in
        # xlm_adapter); no classification head is registered in MLM pretraining, so there is
        # no pooler; roberta's defaults are post-norm, layernorm_embedding, learned positions,
        # no embedding scale -- the same structure as xlm_adapter.
        return [str(data.roberta), "--task", "masked_lm", "--arch", "roberta"]
    langs = languages[:1] if variant == "joint" else languages
    return [str(data.xlint), "--user-dir", str(USER_DIR), "--task", "xlm_mlm",
            "--languages", ",".join(langs), "--arch", "xlm_adapter", "--language-specific", VARIANTS[variant]]


def fairseq_argv(variant: str, data: BenchData, args: argparse.Namespace) -> List[str]:
    """The variant's ``fairseq-train`` arguments."""
    return [*variant_args(variant, data, args.language_list), *shared_args(args)]


def train_command(variant: str, data: BenchData, args: argparse.Namespace) -> List[str]:
    """``fairseq-train`` (fairseq_cli.train.cli_main) run through the worker of the entry script."""
    return [sys.executable, str(ENTRY_SCRIPT), WORKER_FLAG, *fairseq_argv(variant, data, args)]


def cpu_only(argv: List[str]) -> List[str]:
    """``argv`` for building the model on the CPU (no half precision, ``--cpu``)."""
    cpu = [a for a in argv if a not in HALF_PRECISION_FLAGS]
    return cpu if "--cpu" in cpu else cpu + ["--cpu"]
