#!/usr/bin/env python
"""Pretraining throughput: xlint's ``xlm_adapter`` versus fairseq's own ``roberta``.

Measures fairseq's training ``wps`` (tokens per second, from ``--log-format json``
``train_inner`` lines) of

* ``roberta``  -- ``--task masked_lm --arch roberta`` (fairseq's reference),
* ``joint``    -- ``--task xlm_mlm --arch xlm_adapter --language-specific joint``
  on one language (the same text as ``roberta``),
* ``adapter``  -- ``--language-specific adapter`` on two languages
  (also ``ffn``, ``attn``, ``shared_adapter`` with ``--variants``),

at one model shape, with one optimizer, batch, dropout and seed, on data binarized
once.  Runs are separate ``fairseq-train`` processes, interleaved (the order is
rotated every repeat) so that slow drifts of the machine hit every variant alike.
Warm-up intervals are dropped; a run's throughput is the median ``wps`` of its
remaining log intervals, a variant's the median over repeats, and each ratio is
the median of the per-repeat ratios variant/roberta (min..max given as spread).

Issue goals: joint >= 0.97 x roberta, adapter >= 0.85 x roberta.

This is a script, not a test::

    python benchmarks/bench_pretrain_throughput.py                       # CPU, ~5 min on 2 cores
    python benchmarks/bench_pretrain_throughput.py --device cuda --fp16 \
        --layers 8 --dim 512 --max-tokens 16384 --updates 200 --repeats 3

See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
USER_DIR = REPO / "user_dir"

#: variant -> (task, --language-specific or None for roberta)
VARIANTS: Dict[str, Optional[str]] = {
    "roberta": None,
    "joint": "joint",
    "ffn": "ffn",
    "attn": "attn",
    "adapter": "adapter",
    "shared_adapter": "shared_adapter",
}
#: issue goals: minimum wps ratio variant/roberta
GOALS = {"joint": 0.97, "adapter": 0.85}

TRAIN_INNER = re.compile(r"train_inner\s*[|:]\s*(\{.*\})\s*$")
PARAMS_LINE = re.compile(r"num\. shared model params: ([\d,]+)")


# --------------------------------------------------------------------------- data


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def synthetic_lines(lang: str, n_tokens: int, vocab: int, seed: int) -> List[str]:
    """Zipf-distributed pseudo-words (``<lang><id>``), sentences of 5-40 words."""
    import numpy as np

    rng = np.random.default_rng(seed)
    probs = 1.0 / np.arange(1, vocab + 1) ** 1.1
    probs /= probs.sum()
    ids = rng.choice(vocab, size=n_tokens, p=probs)
    words = np.array([f"{lang}{i}" for i in range(vocab)], dtype=object)[ids]
    lengths = rng.integers(5, 41, size=n_tokens // 5 + 1)
    bounds = np.cumsum(lengths)
    bounds = bounds[bounds < n_tokens]
    return [" ".join(chunk) for chunk in np.split(words, bounds) if len(chunk)]


def raw_text_lines(path: Path, n_tokens: int) -> List[str]:
    """The file's non-empty lines, repeated until they hold at least ``n_tokens`` words."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise SystemExit(f"{path} holds no text")
    out, count = [], 0
    while count < n_tokens:
        for line in lines:
            out.append(line)
            count += len(line.split())
            if count >= n_tokens:
                break
    return out


def run_quiet(cmd: Sequence[str], log_path: Path) -> None:
    with open(log_path, "w", encoding="utf-8") as log:
        code = subprocess.call(list(cmd), stdout=log, stderr=subprocess.STDOUT)
    if code:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise SystemExit(f"command failed ({code}): {shlex.join(cmd)}\n" + "\n".join(tail))


def build_data(work: Path, languages: List[str], raw_dir: Optional[Path], n_tokens: int,
               vocab: int, seed: int) -> Dict[str, Path]:
    """Binarize once into roberta's layout (first language) and xlint's (all languages)."""
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for index, lang in enumerate(languages):
        if raw_dir is not None:
            lines = raw_text_lines(raw_dir / f"{lang}.txt", n_tokens)
        else:
            lines = synthetic_lines(lang, n_tokens, vocab, seed + index)
        valid = lines[: max(1, min(200, len(lines) // 20))]
        (raw / f"{lang}.train").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (raw / f"{lang}.valid").write_text("\n".join(valid) + "\n", encoding="utf-8")
    with open(raw / "all.train", "w", encoding="utf-8") as out:
        for lang in languages:
            out.write((raw / f"{lang}.train").read_text(encoding="utf-8"))

    preprocess = [sys.executable, "-m", "fairseq_cli.preprocess", "--only-source", "--workers", "1"]
    dict_dir = work / "dict"
    run_quiet(preprocess + ["--dict-only", "--trainpref", str(raw / "all.train"), "--destdir", str(dict_dir),
                            "--nwordssrc", str(vocab)], work / "preprocess_dict.log")
    dictionary = dict_dir / "dict.txt"

    def binarize(lang: str, dest: Path) -> None:
        run_quiet(preprocess + ["--srcdict", str(dictionary), "--trainpref", str(raw / f"{lang}.train"),
                                "--validpref", str(raw / f"{lang}.valid"), "--destdir", str(dest)],
                  work / f"preprocess_{dest.name}.log")

    roberta_data = work / "data_roberta"  # DATA/{dict.txt,train.bin,train.idx,...}
    binarize(languages[0], roberta_data)
    xlint_data = work / "data_xlint"  # DATA/{dict.txt,metadata.json,<lang>/train.bin,...}
    for lang in languages:
        binarize(lang, xlint_data / lang)
    shutil.copy(dictionary, xlint_data / "dict.txt")
    (xlint_data / "metadata.json").write_text(json.dumps({"languages": languages}), encoding="utf-8")
    return {"roberta": roberta_data, "xlint": xlint_data, "dict": dictionary}


# --------------------------------------------------------------------------- commands


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


def variant_args(variant: str, data: Dict[str, Path], languages: List[str],
                 args: argparse.Namespace) -> List[str]:
    if variant == "roberta":
        # --untie-weights-roberta is off by default (LM head tied to the embeddings, as in
        # xlm_adapter); no classification head is registered in MLM pretraining, so there is
        # no pooler; roberta's defaults are post-norm, layernorm_embedding, learned positions,
        # no embedding scale -- the same structure as xlm_adapter.
        return [str(data["roberta"]), "--task", "masked_lm", "--arch", "roberta"]
    langs = languages[:1] if variant == "joint" else languages
    return [str(data["xlint"]), "--user-dir", str(USER_DIR), "--task", "xlm_mlm",
            "--languages", ",".join(langs), "--arch", "xlm_adapter", "--language-specific", VARIANTS[variant]]


def train_command(variant: str, data, languages, args) -> List[str]:
    """``fairseq-train`` (fairseq_cli.train.cli_main) run through :func:`train_worker`."""
    return [sys.executable, str(Path(__file__).resolve()), WORKER_FLAG,
            *variant_args(variant, data, languages, args), *shared_args(args)]


WORKER_FLAG = "--fairseq-train-worker"


def train_worker(fairseq_argv: List[str]) -> None:
    """Run fairseq's own ``fairseq-train`` main, adding two fields to each ``train_inner`` line.

    ``bench_wall_s`` / ``bench_cpu_s``: wall-clock and process CPU seconds since the
    previous ``train_inner`` line (fairseq resets its ``wps`` meter right after each
    line, so both cover the same interval).  With one thread, tokens per CPU-second
    is what ``wps`` would be on an idle core: it stays comparable when other
    processes share the machine.  Nothing else of the training is changed.
    """
    from fairseq_cli import train  # first: it configures the root logger before fairseq is imported
    from fairseq.logging import progress_bar

    original_log = progress_bar.JsonProgressBar.log
    last = {"cpu": time.process_time(), "wall": time.perf_counter()}

    def log(self, stats, tag=None, step=None):
        if tag == "train_inner":
            cpu, wall = time.process_time(), time.perf_counter()
            stats = dict(stats, bench_cpu_s=round(cpu - last["cpu"], 4), bench_wall_s=round(wall - last["wall"], 4))
            last.update(cpu=cpu, wall=wall)
        return original_log(self, stats, tag=tag, step=step)

    progress_bar.JsonProgressBar.log = log
    sys.argv = ["fairseq-train", *fairseq_argv]
    train.cli_main()


# --------------------------------------------------------------------------- parameters


def _group_of(name: str) -> str:
    if "embed_tokens" in name:
        return "token embeddings (tied with LM head)"
    if "embed_positions" in name:
        return "position embeddings"
    if "layernorm_embedding" in name:
        return "embedding layer norm"
    if "lm_head" in name:
        return "LM head (dense, LN, bias)"
    if "classification_heads" in name or "pooler" in name:
        return "classification heads / pooler"
    if "adapter" in name:
        return "adapters"
    if "self_attn_layer_norm" in name or "final_layer_norm" in name:
        return "layer norms"
    if "self_attn" in name or "attention" in name:
        return "self-attention"
    if "fc1" in name or "fc2" in name:
        return "feed-forward"
    return "other"


def parameter_report(variant: str, data, languages, args) -> Dict[str, object]:
    """Build the variant's model in-process (same argv as the run) and break its parameters down."""
    import logging
    import warnings

    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    warnings.simplefilter("ignore")  # hydra's deprecation chatter
    for name in ("fairseq", "hydra", "xlint", "user_dir"):
        logging.getLogger(name).setLevel(logging.WARNING)

    argv = variant_args(variant, data, languages, args) + shared_args(args)
    if args.device != "cpu":
        argv = [a for a in argv if a not in ("--fp16", "--fp16-no-flatten-grads", "--bf16")] + ["--cpu"]  # no GPU
    parser = options.get_training_parser()
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, argv))
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    groups: Dict[str, int] = {}
    tensors = 0
    for name, param in model.named_parameters():
        groups[_group_of(name)] = groups.get(_group_of(name), 0) + param.numel()
        tensors += 1
    encoder = model.encoder
    lm_head = encoder.lm_head
    embed = encoder.sentence_encoder.embed_tokens if hasattr(encoder, "sentence_encoder") else encoder.embed_tokens
    per_language = 0
    if hasattr(model, "parameter_counts"):
        counts = model.parameter_counts()
        per_language = sum(v for k, v in counts.items() if k != "shared")
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "tensors": tensors,
        "groups": groups,
        "language_specific": per_language,
        "lm_head_tied": lm_head.weight is embed.weight,
        "vocab": embed.num_embeddings,
        "positions": (encoder.sentence_encoder.embed_positions if hasattr(encoder, "sentence_encoder")
                      else encoder.embed_positions).num_embeddings,
    }


# --------------------------------------------------------------------------- runs


def run_training(cmd: List[str], run_dir: Path, env: Dict[str, str]) -> Dict[str, object]:
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "train.log"
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        code = subprocess.call(cmd + ["--save-dir", str(run_dir / "checkpoints")], cwd=run_dir,
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if code:
        raise SystemExit(f"fairseq-train failed ({code}); log: {log_path}\n" + "\n".join(text.splitlines()[-20:]))
    intervals, params = [], None
    for line in text.splitlines():
        match = TRAIN_INNER.search(line)
        if match:
            stats = json.loads(match.group(1))
            intervals.append({k: float(stats[k]) for k in ("num_updates", "wps", "ups", "wpb", "bsz", "epoch",
                                                           "bench_cpu_s", "bench_wall_s") if k in stats})
        match = PARAMS_LINE.search(line)
        if match and params is None:
            params = int(match.group(1).replace(",", ""))
    if not any(iv["num_updates"] for iv in intervals):
        raise SystemExit(f"no train_inner lines with wps in {log_path}")
    previous = 0.0
    for iv in intervals:  # tokens per CPU-second of each interval
        updates, previous = iv["num_updates"] - previous, iv["num_updates"]
        if iv.get("bench_cpu_s"):
            iv["cpu_wps"] = iv["wpb"] * updates / iv["bench_cpu_s"]
    return {"intervals": intervals, "params_logged": params, "process_wall_s": round(wall, 2),
            "log": str(log_path)}


def steady(run: Dict[str, object], warmup_updates: int, key: str = "wps") -> Optional[float]:
    """Median of ``key`` over the log intervals after the warm-up."""
    values = [iv[key] for iv in run["intervals"] if iv["num_updates"] > warmup_updates and key in iv]
    return statistics.median(values) if values else None


def spread(values: Sequence[float]) -> Dict[str, object]:
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


# --------------------------------------------------------------------------- main


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--variants", default="roberta,joint,adapter",
                   help="comma-separated, from " + ",".join(VARIANTS) + " (roberta is always added)")
    p.add_argument("--updates", type=int, default=30, help="--max-update of every run")
    p.add_argument("--warmup-updates", type=int, default=10,
                   help="log intervals ending at or before this update are dropped")
    p.add_argument("--log-interval", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="runs per variant (interleaved)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--ffn-dim", type=int, default=0, help="0 = 4 x dim")
    p.add_argument("--heads", type=int, default=0, help="0 = dim / 64")
    p.add_argument("--tokens-per-sample", type=int, default=128, help="also --max-positions")
    p.add_argument("--sample-break-mode", default="none", choices=("none", "complete", "complete_doc", "eos"))
    p.add_argument("--max-tokens", type=int, default=2048)
    p.add_argument("--dropout", type=float, default=0.1, help="dropout and attention dropout of every model")
    p.add_argument("--vocab", type=int, default=8000, help="dictionary size cap (synthetic text: word types)")
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
    args.language_list = [l.strip() for l in args.languages.split(",") if l.strip()]
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


def fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        work = args.workdir or Path("WORKDIR")
        data = {"roberta": work / "data_roberta", "xlint": work / "data_xlint"}
        for variant in args.variant_list:
            print(f"# {variant}\n" + shlex.join(train_command(variant, data, args.language_list, args)))
        return 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="xlint-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""

    t0 = time.perf_counter()
    _log(f"[bench] work dir {work}; binarizing {len(args.language_list)} x {args.train_tokens:,} words")
    data = build_data(work, args.language_list, args.raw_dir, args.train_tokens, args.vocab, args.seed)
    prep_s = time.perf_counter() - t0

    commands = {v: train_command(v, data, args.language_list, args) for v in args.variant_list}
    params: Dict[str, Dict[str, object]] = {}
    if not args.skip_param_report:
        for variant in args.variant_list:
            params[variant] = parameter_report(variant, data, args.language_list, args)

    runs: Dict[str, List[Dict[str, object]]] = {v: [] for v in args.variant_list}
    order_log = []
    for rep in range(args.repeats):
        shift = rep % len(args.variant_list)
        order = args.variant_list[shift:] + args.variant_list[:shift]  # rotated interleaving
        order_log.append(order)
        for variant in order:
            run = run_training(commands[variant], work / "runs" / f"{variant}_{rep}", env)
            run["repeat"] = rep
            run["steady_wps"] = steady(run, args.warmup_updates)
            run["steady_cpu_wps"] = steady(run, args.warmup_updates, "cpu_wps")
            cpu_s, wall_s = (steady(run, args.warmup_updates, k) for k in ("bench_cpu_s", "bench_wall_s"))
            run["busy"] = cpu_s / wall_s if cpu_s and wall_s else float("nan")
            epochs = {iv.get("epoch") for iv in run["intervals"]}
            if len(epochs) > 1:
                _log(f"[bench] warning: {variant} run {rep} crossed an epoch boundary; raise --train-tokens")
            runs[variant].append(run)
            _log(f"[bench] repeat {rep + 1}/{args.repeats} {variant:>14}: steady wps "
                 f"{run['steady_wps'] or float('nan'):,.0f} (intervals: "
                 + ", ".join(f"{iv['wps']:.0f}" for iv in run["intervals"])
                 + f"; tokens/CPU-s {run['steady_cpu_wps'] or float('nan'):,.0f}; CPU/wall {run['busy']:.2f}; "
                 f"{run['process_wall_s']} s)")

    # ---------------------------------------------------------------- summary
    summary: Dict[str, Dict[str, object]] = {}
    base = [r["steady_wps"] for r in runs["roberta"]]
    cpu_base = [r["steady_cpu_wps"] for r in runs["roberta"]]
    for variant in args.variant_list:
        wps = [r["steady_wps"] for r in runs[variant]]
        cpu_wps = [r["steady_cpu_wps"] for r in runs[variant] if r["steady_cpu_wps"]]
        entry: Dict[str, object] = {"wps": spread(wps), "wpb": statistics.median(
            iv["wpb"] for r in runs[variant] for iv in r["intervals"] if iv["num_updates"] > args.warmup_updates),
            "cpu_wps": spread(cpu_wps), "cpu_over_wall": spread([r["busy"] for r in runs[variant]])}
        if variant != "roberta":
            ratios = [w / b for w, b in zip(wps, base)]
            entry["ratio"] = spread(ratios)
            entry["ratio_of_medians"] = statistics.median(wps) / statistics.median(base)
            if cpu_wps and len(cpu_wps) == len(cpu_base) and all(cpu_base):
                entry["cpu_ratio"] = spread([w / b for w, b in zip(cpu_wps, cpu_base)])
            goal = GOALS.get(variant)
            if goal is not None:
                entry["goal"] = goal
                entry["meets_goal"] = entry["ratio"]["median"] >= goal
        entry["params_logged"] = sorted({r["params_logged"] for r in runs[variant]})
        summary[variant] = entry

    shape = (f"{args.layers} layers, d={args.dim}, ffn={args.ffn_dim}, {args.heads} heads, "
             f"{args.tokens_per_sample} tokens/sample, --max-tokens {args.max_tokens}, "
             f"break mode {args.sample_break_mode}, dropout {args.dropout}")
    lines = [
        f"## xlm_adapter vs roberta pretraining throughput ({args.device})",
        "",
        f"Shape: {shape}.  {args.updates} updates per run, intervals of {args.log_interval} updates, "
        f"first {args.warmup_updates} updates dropped; {args.repeats} interleaved repeats.  "
        f"torch {_version('torch')}, fairseq {_version('fairseq')}, {os.cpu_count()} CPUs"
        + (f", {args.threads} threads" if args.threads else "") + ".",
        "",
        "| variant | params | tokens/batch | wps median | wps min..max | ratio vs roberta (median of paired) "
        "| ratio min..max | goal | |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for variant in args.variant_list:
        entry = summary[variant]
        count = params.get(variant, {}).get("total") or (entry["params_logged"] or [0])[0]
        wps = entry["wps"]
        if variant == "roberta":
            ratio_cells = "1.000 | - | - | "
        else:
            r = entry["ratio"]
            goal = entry.get("goal")
            verdict = "" if goal is None else ("PASS" if entry["meets_goal"] else "FAIL")
            ratio_cells = (f"{r['median']:.3f} | {r['min']:.3f}..{r['max']:.3f} | "
                           + (f">= {goal:.2f}" if goal is not None else "-") + f" | {verdict}")
        lines.append(f"| {variant} | {fmt(count)} | {fmt(entry['wpb'])} | {fmt(wps['median'])} | "
                     f"{fmt(wps['min'])}..{fmt(wps['max'])} | {ratio_cells} |")
    if args.device == "cpu" and all(summary[v]["cpu_wps"]["n"] and (v == "roberta" or "cpu_ratio" in summary[v])
                                    for v in args.variant_list):
        lines += ["", "Same intervals per CPU-second of the training process (tokens / process CPU time; "
                      "with one thread this is wps on an idle core, so it resists other load on the "
                      "machine; CPU/wall < 1 means the run waited for a core):", "",
                  "| variant | tokens/CPU-s median | min..max | ratio vs roberta (median of paired) "
                  "| ratio min..max | CPU/wall median |",
                  "|---|---:|---:|---:|---:|---:|"]
        for variant in args.variant_list:
            entry = summary[variant]
            c = entry["cpu_wps"]
            ratio = ("1.000 | -" if variant == "roberta" else
                     f"{entry['cpu_ratio']['median']:.3f} | "
                     f"{entry['cpu_ratio']['min']:.3f}..{entry['cpu_ratio']['max']:.3f}")
            lines.append(f"| {variant} | {fmt(c['median'])} | {fmt(c['min'])}..{fmt(c['max'])} | {ratio} | "
                         f"{entry['cpu_over_wall']['median']:.2f} |")
    busy = statistics.median(r["busy"] for v in args.variant_list for r in runs[v])
    if args.device == "cpu" and args.threads == 1 and busy < 0.9:
        lines += ["", f"NOTE: the training processes had a core only {busy:.0%} of the time (other load on "
                      "the machine); wall-clock wps ratios are noisy -- trust the CPU-second table."]
    if params:
        groups = sorted({g for rep in params.values() for g in rep["groups"]})
        lines += ["", "Parameters (built in-process from the same arguments):", "",
                  "| group | " + " | ".join(args.variant_list) + " |",
                  "|---|" + "---:|" * len(args.variant_list)]
        for group in groups:
            lines.append(f"| {group} | " + " | ".join(fmt(params[v]["groups"].get(group, 0))
                                                   for v in args.variant_list) + " |")
        for label, key in (("total", "total"), ("parameter tensors", "tensors"),
                           ("language-specific", "language_specific"), ("vocabulary rows", "vocab"),
                           ("position rows", "positions"), ("LM head tied", "lm_head_tied")):
            lines.append(f"| {label} | " + " | ".join(
                str(params[v][key]) if isinstance(params[v][key], bool) else fmt(params[v][key])
                for v in args.variant_list) + " |")
        if "joint" in params and params["joint"]["total"] != params["roberta"]["total"]:
            lines += ["", f"WARNING: joint has {params['joint']['total']:,} parameters, "
                          f"roberta {params['roberta']['total']:,}: shapes differ."]
    print("\n".join(lines))

    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": {"python": platform.python_version(), "torch": _version("torch"),
                        "fairseq": _version("fairseq"), "cpus": os.cpu_count(), "machine": platform.machine()},
        "commands": {v: shlex.join(c) for v, c in commands.items()},
        "order": order_log,
        "params": params,
        "runs": runs,
        "summary": summary,
        "prep_s": round(prep_s, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "markdown": "\n".join(lines),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
        _log(f"[bench] wrote {args.out}")
    _log(f"[bench] total {result['total_s']} s (data {result['prep_s']} s); logs under {work}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    missed = [v for v, e in summary.items() if e.get("meets_goal") is False]
    if args.check and missed:
        _log(f"[bench] goal missed by: {', '.join(missed)}")
        return 1
    return 0


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # pragma: no cover - informative only
        return "?"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == WORKER_FLAG:
        train_worker(sys.argv[2:])
    else:
        sys.exit(main())
