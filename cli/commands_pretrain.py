"""``xlint pretrain`` (presets over fairseq-train) and ``xlint user-dir``."""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import click

from .fairseq_runner import OptionValue, fairseq_train_command, run_command, user_dir_path

#: Model variants (Wang et al. 2020, Table 2) -> (task, --language-specific)
VARIANTS: Dict[str, Tuple[str, str]] = {
    "joint": ("xlm_mlm", "joint"),
    "ffn": ("xlm_mlm", "ffn"),
    "attn": ("xlm_mlm", "attn"),
    "adapter": ("xlm_mlm", "adapter"),
    "shared_adapter": ("xlm_mlm", "shared_adapter"),
    "meta_adapter": ("meta_mlm", "adapter"),
}

#: Training presets.  ``paper``: Wang et al. (2020) Sec. 3 / XLM's recipe: 8 layers, d=512,
#: Adam (0.9, 0.98) at 1e-4 with XLM's inverse-sqrt schedule, 128 streams of 256 tokens per
#: GPU (512 on 4 GPUs), fp16, 50 epochs of 10k updates.  ``tiny``: a CPU-sized smoke model.
#:
#: Every update trains one language, so the other languages' modules get no gradient, and
#: they must stay untouched (values and Adam moments), as in one fp32 process.  The presets
#: use settings under which the xlm_mlm task guarantees that (it refuses the others at
#: start): ``--ddp-backend legacy_ddp`` (fairseq's default pytorch DDP fails on unused
#: parameters unless --find-unused-parameters is given, and fairseq's wrapper of it does not
#: run on CPU) and, with fp16, ``--fp16-no-flatten-grads`` (flat gradients give every
#: parameter a zero gradient and one shared Adam step count).  Every variant gets the same
#: settings, so the rows of Table 2 differ only in their modules.
DATA_PARALLEL: Dict[str, OptionValue] = {"ddp_backend": "legacy_ddp"}

SCALES: Dict[str, Dict[str, OptionValue]] = {
    "paper": {
        "arch": "xlm_adapter_paper", "criterion": "masked_lm",
        "optimizer": "adam", "adam_betas": "(0.9,0.98)", "adam_eps": 1e-6, "clip_norm": 5.0,
        "lr": 1e-4, "lr_scheduler": "inverse_sqrt", "warmup_updates": 4000, "warmup_init_lr": 1e-7,
        "batch_size": 128, "tokens_per_sample": 256, "sample_break_mode": "none",
        "max_update": 500000, "save_interval_updates": 10000, "keep_interval_updates": 3,
        "fp16": True, "fp16_no_flatten_grads": True,
        "log_interval": 100, "skip_invalid_size_inputs_valid_test": True,
    },
    "tiny": {
        "arch": "xlm_adapter_tiny", "criterion": "masked_lm",
        "optimizer": "adam", "adam_betas": "(0.9,0.98)", "clip_norm": 5.0,
        "lr": 1e-3, "lr_scheduler": "inverse_sqrt", "warmup_updates": 50, "warmup_init_lr": 1e-6,
        "batch_size": 32, "tokens_per_sample": 128, "sample_break_mode": "eos",
        "max_update": 300, "save_interval_updates": 100, "keep_interval_updates": 1,
        "no_epoch_checkpoints": True, "cpu": True, "num_workers": 0, "log_interval": 20,
        "skip_invalid_size_inputs_valid_test": True,
    },
}

SETTINGS = ("mono", "jointpair", "jointtri")


def setting_languages(setting: Optional[str], lang: Optional[str], similar: Optional[str],
                      pivot: str, languages: Optional[str]) -> List[str]:
    """Mono = [lang]; JointPair = [lang, pivot]; JointTri = [lang, similar, pivot]; or --languages."""
    if languages:
        if setting:
            raise click.UsageError("give either --languages or --setting, not both")
        return [code.strip() for code in languages.split(",") if code.strip()]
    if not setting or not lang:
        raise click.UsageError("give --languages, or --setting with --lang")
    if setting == "mono":
        return [lang]
    if setting == "jointpair":
        return [lang, pivot]
    if not similar:
        raise click.UsageError("--setting jointtri needs --similar (a language similar to --lang)")
    return [lang, similar, pivot]


def check_data(data: Path, languages: Sequence[str]) -> None:
    metadata = data / "metadata.json"
    if not metadata.is_file():
        raise click.BadParameter(f"{metadata} not found: run `xlint preprocess` first", param_hint="DATA")
    try:
        available = json.loads(metadata.read_text(encoding="utf-8"))["languages"]
    except (ValueError, KeyError) as err:
        raise click.BadParameter(f"{metadata} is not xlint metadata ({err})", param_hint="DATA") from None
    missing = [lang for lang in languages if lang not in available]
    if missing:
        raise click.BadParameter(f"language(s) {', '.join(missing)} not in {metadata} (has {', '.join(available)})",
                                 param_hint="--languages/--lang")


def pretrain_options(scale: str, variant: str, languages: Sequence[str], save_dir: Path,
                     seed: int, max_update: Optional[int]) -> Dict[str, OptionValue]:
    task, language_specific = VARIANTS[variant]
    options: Dict[str, OptionValue] = {"task": task, "languages": ",".join(languages)}
    options.update(SCALES[scale])
    options.update(DATA_PARALLEL)
    options.update({"language_specific": language_specific, "save_dir": str(save_dir), "seed": seed})
    if max_update is not None:
        options["max_update"] = max_update
    return options


@click.command("pretrain", context_settings={"ignore_unknown_options": True})
@click.argument("data", type=click.Path(path_type=Path, file_okay=False))
@click.option("--variant", type=click.Choice(sorted(VARIANTS)), default="joint", show_default=True,
              help="language-specific modules: joint (none), ffn, attn, adapter, shared_adapter, "
              "meta_adapter (adapters meta-learned by the meta_mlm task)")
@click.option("--setting", type=click.Choice(SETTINGS), help="Mono [lang], JointPair [lang,pivot], "
              "JointTri [lang,similar,pivot]")
@click.option("--lang", help="the studied language for --setting")
@click.option("--similar", help="the similar language of JointTri")
@click.option("--pivot", default="en", show_default=True, help="the pivot language of JointPair/JointTri")
@click.option("--languages", help="explicit comma-separated languages instead of --setting")
@click.option("--scale", type=click.Choice(sorted(SCALES)), default="paper", show_default=True,
              help="hyper-parameter preset: paper (GPUs) or tiny (CPU smoke)")
@click.option("--save-dir", type=click.Path(path_type=Path), required=True, help="checkpoint folder")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--max-update", type=int, help="override the preset's number of updates")
@click.option("--dry-run", is_flag=True, help="print the fairseq-train command without running it")
@click.argument("fairseq_args", nargs=-1, type=click.UNPROCESSED)
def pretrain(data: Path, variant: str, setting: Optional[str], lang: Optional[str], similar: Optional[str],
             pivot: str, languages: Optional[str], scale: str, save_dir: Path, seed: int,
             max_update: Optional[int], dry_run: bool, fairseq_args: Tuple[str, ...]) -> None:
    """Pretrain a multilingual MLM on DATA (from `xlint preprocess`) with fairseq-train.

    Extra arguments after `--` go to fairseq-train unchanged and win over the preset,
    e.g. distributed flags: `-- --distributed-world-size 4` (GPUs; the preset's
    --ddp-backend legacy_ddp keeps other languages' modules untouched in each update).
    Training resumes from SAVE_DIR/checkpoint_last.pt when it exists.
    """
    chosen = setting_languages(setting, lang, similar, pivot, languages)
    check_data(data, chosen)
    command = fairseq_train_command(data, pretrain_options(scale, variant, chosen, save_dir, seed, max_update),
                                    fairseq_args)
    click.echo("equivalent fairseq command:\n  " + shlex.join(command))
    if dry_run:
        return
    save_dir.mkdir(parents=True, exist_ok=True)
    run_command(command, log_file=save_dir / "train.log", echo=False, append=True)  # a resumed run keeps its history


@click.command("user-dir")
def user_dir_command() -> None:
    """Print the path to pass as `fairseq-train --user-dir`."""
    click.echo(str(user_dir_path()))
