"""The benchmark's options, its variants and the issue goals."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Optional, Sequence

#: variant -> ``--language-specific`` of xlm_adapter (None: fairseq's roberta)
VARIANTS: Dict[str, Optional[str]] = {
    "roberta": None,
    "joint": "joint",
    "ffn": "ffn",
    "attn": "attn",
    "adapter": "adapter",
    "shared_adapter": "shared_adapter",
}
#: issue goals: minimum throughput ratio variant/roberta
GOALS: Dict[str, float] = {"joint": 0.97, "adapter": 0.85}
#: ``--interleave``: turns per log interval (all runs of a repeat alive), or one run after another
INTERLEAVE_MODES = ("interval", "run")
#: synthetic text: words per sentence (both ends included) and the Zipf exponent of the word draws
SENTENCE_LENGTH = (5, 40)
ZIPF_EXPONENT = 1.1
VALID_SENTENCES = 200


def build_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--variants", default="roberta,joint,adapter",
                   help="comma-separated, from " + ",".join(VARIANTS) + " (roberta is always added)")
    p.add_argument("--updates", type=int, default=40, help="--max-update of every run")
    p.add_argument("--warmup-updates", type=int, default=10,
                   help="log intervals ending at or before this update are dropped")
    p.add_argument("--log-interval", type=int, default=10, help="updates per measured interval")
    p.add_argument("--repeats", type=int, default=3, help="runs per variant")
    p.add_argument("--interleave", choices=INTERLEAVE_MODES, default="interval",
                   help="interval: the runs of a repeat are alive together and take turns, one log interval "
                        "each (rotated every round); run: one whole run after another (rotated every repeat)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--ffn-dim", type=int, default=0, help="0 = 4 x dim")
    p.add_argument("--heads", type=int, default=0, help="0 = dim / 64")
    p.add_argument("--tokens-per-sample", type=int, default=128, help="also --max-positions")
    p.add_argument("--sample-break-mode", default="none", choices=("none", "complete", "complete_doc", "eos"))
    p.add_argument("--max-tokens", type=int, default=2048)
    p.add_argument("--dropout", type=float, default=0.1, help="dropout and attention dropout of every model")
    p.add_argument("--vocab", type=int, default=8000,
                   help="dictionary size cap, special symbols included (synthetic text: also the word types "
                        "per language)")
    p.add_argument("--languages", default="en,de",
                   help="first = roberta/joint language; all = adapter & co. (with --raw-dir: DIR/<lang>.txt)")
    p.add_argument("--raw-dir", type=Path, default=None, help="raw text (<lang>.txt) instead of synthetic text")
    p.add_argument("--train-tokens", type=int, default=0,
                   help="training words per language; 0 = enough for one epoch of --updates")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--fp16", action="store_true", help="with --device cuda")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="OMP/MKL threads of each run; 0 = torch's default; default: 1 on cpu (stable ratios "
                        "on a shared machine), 0 on cuda")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--extra-args", default="", help="more fairseq-train arguments for every variant")
    p.add_argument("--workdir", type=Path, default=None, help="keep data and logs here (default: a temp dir)")
    p.add_argument("--skip-param-report", action="store_true", help="do not build the models in-process")
    p.add_argument("--out", type=Path, default=None, help="write all numbers as JSON here")
    p.add_argument("--check", action="store_true", help="exit with status 1 when a goal is missed")
    p.add_argument("--dry-run", action="store_true", help="print the fairseq-train commands and exit")
    return p


def parse_args(argv: Optional[Sequence[str]], p: argparse.ArgumentParser) -> argparse.Namespace:
    """The options of ``p`` (from :func:`build_parser`), checked, with the derived ones:
    ``variant_list``, ``language_list``, the shape's defaults, ``train_tokens``."""
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = 1 if args.device == "cpu" else 0
    args.ffn_dim = args.ffn_dim or 4 * args.dim
    args.heads = args.heads or max(1, args.dim // 64)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    args.variant_list = ["roberta"] + [v for v in variants if v != "roberta"]
    args.language_list = [lang.strip() for lang in args.languages.split(",") if lang.strip()]
    if any(v not in ("roberta", "joint") for v in args.variant_list) and len(args.language_list) < 2:
        p.error("language-specific variants need at least two --languages")
    if args.fp16 and args.device != "cuda":
        p.error("--fp16 needs --device cuda")
    if args.warmup_updates >= args.updates:
        p.error("--warmup-updates must be below --updates")
    if not args.train_tokens:
        # one epoch must cover every run (a new epoch inside a measured interval costs a rebuild)
        args.train_tokens = int(args.updates * args.max_tokens * 1.3) + 20 * args.tokens_per_sample
    return args
