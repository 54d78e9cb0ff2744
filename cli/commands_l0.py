"""``xlint l0``: per-language L0 masks over a frozen pretrained model (Wang et al. 2020, Sec. 3.3, Fig. 4).

``xlint l0 train CKPT --data DATA --languages ar,en --save-dir OUT`` runs one ``fairseq-train
--task l0_mlm --criterion l0_hard_concrete`` job per language and seed (``OUT/<lang>/seed<k>``;
the default seeds 1,2 give every language a second run for the within-language baseline).  A
job that has written ``gates.json`` for at least ``--max-update`` updates is skipped; any other
resumes from its ``checkpoint_last.pt`` (fairseq's own resume).

``xlint l0 compare RUN... --out DIR`` compares the learned ``log α`` (π) of the runs: cosine per
layer between languages and within a language, attention vs FFN (Fig. 4a), the most negative and
most positive groups of one language beside another's (Fig. 4b), and each layer's density after
binarising; it writes ``compare.json`` and the figures.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import click

from .fairseq_runner import OptionValue, fairseq_train_command, run_command

GATES_FILE = "gates.json"


def parse_list(value: str, what: str) -> List[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise click.BadParameter(f"no {what} given", param_hint=f"--{what}")
    if len(set(items)) != len(items):
        raise click.BadParameter(f"{value!r} lists a value twice", param_hint=f"--{what}")
    return items


def read_pretrained_config(checkpoint: Path) -> dict:
    """The pretrained checkpoint's saved config (``model`` and ``task`` groups), or a click error."""
    import torch

    from xlint.user_dir import checkpoint_compat  # noqa: F401  (fairseq checkpoints under weights_only)

    try:
        state = torch.load(checkpoint, map_location="cpu")
        cfg = state["cfg"]
        return {"model": dict(cfg["model"]), "task": dict(cfg["task"])}
    except Exception as err:  # torch.load raises pickle, zip, OS and runtime errors alike
        raise click.BadParameter(f"{checkpoint} is not a readable fairseq checkpoint ({type(err).__name__}: {err})",
                                 param_hint="CHECKPOINT") from None


def fairseq_seed(language: str, seed: int) -> int:
    """The fairseq ``--seed`` of replicate ``seed`` of ``language``: distinct for every job, so that no two
    runs share initial gate noise, hard-concrete noise or batch order (a language pair with a common seed
    would otherwise look more alike than two seeds of one language)."""
    from xlint.analysis.seeding import stable_seed

    return stable_seed("l0", language, seed) % 2**31


def job_options(checkpoint: Path, pretrained: dict, language: str, seed: int, save_dir: Path,
                settings: Dict[str, OptionValue]) -> Dict[str, OptionValue]:
    """The fairseq-train options of one language's mask-learning job."""
    model, task = pretrained["model"], pretrained["task"]
    options: Dict[str, OptionValue] = {
        "task": "l0_mlm", "languages": language, "pretrained_checkpoint": str(checkpoint.resolve()),
        "arch": model.get("_name") or "xlm_adapter",
        "tokens_per_sample": task.get("tokens_per_sample", 512),
        "sample_break_mode": task.get("sample_break_mode", "none"),
        "criterion": "l0_hard_concrete", "optimizer": "adam", "adam_betas": "(0.9,0.999)",
        "weight_decay": 0.0, "lr_scheduler": "fixed", "ddp_backend": "legacy_ddp",
        "no_epoch_checkpoints": True, "keep_interval_updates": 1,
        "log_format": "json", "skip_invalid_size_inputs_valid_test": True,
    }
    options.update(settings)
    options.update({"seed": fairseq_seed(language, seed), "save_dir": str(save_dir)})
    return options


def export_gates(checkpoint: Path, out: Path, language: str, seed: int) -> dict:
    """Write the run's learned gates (names, layer/sublayer keys, log α) to ``out`` (JSON, atomically)."""
    import torch

    from xlint.preprocess.textio import write_json_atomic
    from xlint.user_dir import checkpoint_compat  # noqa: F401
    from xlint.user_dir.modules.gate_layout import GateLayout

    state = torch.load(checkpoint, map_location="cpu")
    criterion = state.get("criterion") or {}
    if "gates.log_alpha" not in criterion:
        raise click.ClickException(f"{checkpoint} has no L0 gates (not an l0_hard_concrete run)")
    extra = criterion["_extra_state"]
    layout = GateLayout.from_spec(extra["layout"])
    history = state.get("optimizer_history") or [{}]
    payload = {
        "language": language, "seed": seed, "fairseq_seed": int(state["cfg"]["common"]["seed"]),
        "checkpoint": str(checkpoint),
        "num_updates": int(history[-1].get("num_updates", 0)),
        "pretrained_checkpoint": state["cfg"]["task"].get("pretrained_checkpoint"),
        "options": extra["options"],
        "multiplier": float(criterion["multiplier"].item()) if "multiplier" in criterion else None,
        "names": layout.gate_names(), "keys": layout.gate_keys(),
        "log_alpha": [round(float(v), 6) for v in criterion["gates.log_alpha"].float().tolist()],
    }
    write_json_atomic(out, payload)
    return payload


def finished_updates(job_dir: Path) -> int:
    import json

    path = job_dir / GATES_FILE
    if not path.is_file():
        return -1
    try:
        return int(json.loads(path.read_text(encoding="utf-8")).get("num_updates", -1))
    except ValueError:
        return -1


@click.group("l0")
def l0() -> None:
    """L0 hard-concrete masks per language over a frozen model (Wang et al. 2020, Fig. 4)."""


@l0.command("train", context_settings={"ignore_unknown_options": True})
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="the pretraining data (from `xlint preprocess`; the checkpoint's dictionary)")
@click.option("--languages", required=True, help="comma-separated languages, one mask each")
@click.option("--save-dir", type=click.Path(path_type=Path), required=True, help="runs go to SAVE_DIR/<lang>/seed<k>")
@click.option("--seeds", default="1,2", show_default=True,
              help="seeds per language (two give the within-language baseline)")
@click.option("--lambda", "l0_lambda", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="λ, the weight of the normalised expected L0 norm")
@click.option("--target-sparsity", type=click.FloatRange(0, 1, max_open=True),
              help="add a Lagrange multiplier term towards this sparsity (raised by gradient ascent)")
@click.option("--l0-normalization", type=click.Choice(["gates", "parameters", "none"]), default="gates",
              show_default=True, help="divide E||z||_0 by the number of gates, weight it by parameters, or not")
@click.option("--attention-gates", type=click.Choice(["row", "head", "matrix"]), default="row", show_default=True)
@click.option("--ffn-gates", type=click.Choice(["row", "neuron", "matrix"]), default="row", show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True, help="Adam learning rate of the gates")
@click.option("--max-update", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--save-interval-updates", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--log-interval", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--cpu", is_flag=True, help="train on CPU")
@click.option("--cpu-threads", type=click.IntRange(min=1), help="OMP/MKL threads of the training processes")
@click.option("--dry-run", is_flag=True, help="print the fairseq-train commands without running them")
@click.argument("fairseq_args", nargs=-1, type=click.UNPROCESSED)
def train(checkpoint: Path, data: Path, languages: str, save_dir: Path, seeds: str, l0_lambda: float,
          target_sparsity: Optional[float], l0_normalization: str, attention_gates: str, ffn_gates: str,
          lr: float, max_update: int, batch_size: int, save_interval_updates: int, log_interval: int,
          cpu: bool, cpu_threads: Optional[int], dry_run: bool, fairseq_args: Tuple[str, ...]) -> None:
    """Learn one L0 mask per language (and seed) over the frozen model CHECKPOINT.

    Extra arguments after `--` go to every fairseq-train command unchanged (e.g.
    `-- --distributed-world-size 4`; the jobs use --ddp-backend legacy_ddp).
    """
    from .commands_pretrain import check_data

    if not checkpoint.is_file():
        raise click.BadParameter(f"{checkpoint} not found", param_hint="CHECKPOINT")
    chosen = parse_list(languages, "languages")
    try:
        seed_list = [int(s) for s in parse_list(seeds, "seeds")]
    except ValueError:
        raise click.BadParameter(f"{seeds!r} is not a list of integers", param_hint="--seeds") from None
    check_data(data, chosen)
    pretrained = read_pretrained_config(checkpoint)
    model_languages = str(pretrained["model"].get("model_languages", "")).split(",")
    missing = [lang for lang in chosen if lang not in model_languages]
    if missing:
        raise click.BadParameter(f"{checkpoint} was not trained on {','.join(missing)} "
                                 f"(its languages: {','.join(model_languages)})", param_hint="--languages")
    settings: Dict[str, OptionValue] = {
        "l0_lambda": l0_lambda, "target_sparsity": target_sparsity, "l0_normalization": l0_normalization,
        "attention_gates": attention_gates, "ffn_gates": ffn_gates, "lr": lr, "max_update": max_update,
        "batch_size": batch_size, "save_interval_updates": save_interval_updates, "log_interval": log_interval,
        "cpu": cpu, "num_workers": 0 if cpu else None,
    }
    env = {"OMP_NUM_THREADS": str(cpu_threads), "MKL_NUM_THREADS": str(cpu_threads)} if cpu_threads else None
    for language in chosen:
        for seed in seed_list:
            job_dir = save_dir / language / f"seed{seed}"
            done = finished_updates(job_dir)
            if done >= max_update:
                click.echo(f"== {language} seed {seed}: done ({done} updates, {job_dir / GATES_FILE})")
                continue
            command = fairseq_train_command(
                data, job_options(checkpoint, pretrained, language, seed, job_dir, settings), fairseq_args)
            resuming = (job_dir / "checkpoint_last.pt").is_file()
            click.echo(f"== {language} seed {seed}{' (resuming)' if resuming else ''}\n+ {shlex.join(command)}")
            if dry_run:
                continue
            job_dir.mkdir(parents=True, exist_ok=True)
            run_command(command, log_file=job_dir / "train.log", echo=False, quiet=True, env=env, append=resuming)
            gates = export_gates(job_dir / "checkpoint_last.pt", job_dir / GATES_FILE, language, seed)
            click.echo(f"   {len(gates['log_alpha'])} gates after {gates['num_updates']} updates -> "
                       f"{job_dir / GATES_FILE}")


@l0.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="folder for compare.json and the figures")
@click.option("--pair", help="the two languages of Fig. 4b, e.g. tr,en (default: the first two)")
@click.option("--top-k", type=click.IntRange(min=1), default=10, show_default=True,
              help="groups at each end of Fig. 4b")
def compare(runs: Sequence[Path], out: Path, pair: Optional[str], top_k: int) -> None:
    """Compare the masks of RUN... (job folders with gates.json, or `l0 train` save dirs)."""
    from .l0_compare import compare_runs, load_runs, plot_figures, write_comparison

    loaded = load_runs(list(runs))
    chosen_pair = parse_list(pair, "pair") if pair else None
    if chosen_pair is not None and len(chosen_pair) != 2:
        raise click.BadParameter("give two languages", param_hint="--pair")
    result = compare_runs(loaded, chosen_pair, top_k)
    write_comparison(result, out)
    for path in plot_figures(result, out):
        click.echo(f"wrote {path}")
    click.echo(f"wrote {out / 'compare.json'}")
