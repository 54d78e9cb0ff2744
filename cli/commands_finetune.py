"""``xlint finetune`` and ``xlint evaluate``: downstream evaluation of pretrained models.

``xlint finetune FT --pretrained CKPT --source LANG --save-dir DIR`` composes one
``fairseq-train`` run per (grid point, seed) with xlint's fine-tuning tasks
(``xlint_tagging``, ``xlint_classification``, ``xlint_qa``: the data folder from
``xlint data convert`` says which), copies the model's architecture and languages
from the pretrained checkpoint's saved cfg and starts from its weights with
``--finetune-from-model`` (optimizer, scheduler, meters and data iterator reset; a
run whose ``checkpoint_last.pt`` exists resumes from it instead).

Two model families: ``xlm_adapter`` checkpoints of ``xlint pretrain``, and roberta-family
checkpoints such as the official XLM-R releases (``--pretrained xlmr.large/``, a folder with
``model.pt``, ``dict.txt`` and ``sentencepiece.bpe.model``, data converted with
``xlint data convert ... --encoder xlmr.large/``), fine-tuned as ``--arch xlint_roberta``
with the release's own options, loaded strictly, a fresh seeded head; pairs are encoded
``<s> A </s> </s> B </s>`` as RoBERTa's.  The latter have no language-specific modules:
``--freeze-language-specific`` and ``--route-languages`` are refused for them.

Settings (Wang et al. 2020 App. A; Guo et al. 2023 for few-shot):

* ``within``: train, select and test on the source language;
* ``zero-shot`` (default): train on the source, validate every epoch on the source
  and all targets' dev sets (each scored separately), select on the source dev set;
* ``few-shot``: as zero-shot with ``--few-shot M`` examples of every target's dev
  set moved into training (the rest stays dev);
* ``bilingual``: train on the source and ``--targets`` mixed (Wu et al. 2022's
  θ_{src,tgt}), validate on each, select on their average dev score.

Model selection: fairseq's ``--best-checkpoint-metric`` on a per-language dev
metric (``--select source``: the paper's rule, ``target``: the average over the
target languages, ``average``: over all dev languages), a checkpoint every epoch,
``checkpoint_best.pt`` being the selected one (fairseq keeps the last of tied
scores; a run's summary reports the validation that file holds, and its dev
history comes from the whole ``train.log``, which every attempt of a resumed run
appends to).  A grid is chosen by the mean over seeds of each run's best dev
score; the chosen point's ``checkpoint_best.pt`` of every seed is then evaluated
on the test sets of all languages, and ``DIR/results.{json,md}`` report mean ± std
over seeds (sample std).  The learning-rate schedule lasts exactly the updates
fairseq-train makes: the task counts them from the batches it builds
(:func:`.finetune_plan.planned_updates`).

``xlint evaluate CKPT`` scores one fine-tuned checkpoint per language on the
whole split, exactly as validation does, and writes JSON and a Markdown table;
the checkpoint must hold exactly the task head its task builds.

Methods (``--method``, Guo et al. 2023; :mod:`.finetune_methods`): ``df`` (default, plain
fine-tuning), ``fsf`` (fine-tuning slow and fast), ``fs``, ``ff``, ``noisytune`` and the Table 8
ablations; the method is part of each run's command line (a changed method is a changed run).

The library behind the commands: :mod:`.finetune_inputs` (the data and the
pretrained checkpoint), :mod:`.finetune_plan` (settings, grid, command lines),
:mod:`.finetune_run` (running and summarising), :mod:`.finetune_report` (seed
aggregation, tables) and :mod:`.evaluation` (in-process scoring).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Tuple

import click

from ..preprocess.textio import write_json_atomic, write_text_atomic
from .evaluation import evaluate_checkpoint, evaluation_paths
from .finetune_methods import METHODS, POLICY_IV_CHOICES, MethodOptions
from .finetune_plan import SELECTIONS, SETTINGS, FinetuneSpec, parse_list
from .finetune_report import evaluation_markdown
from .finetune_run import run_finetune


@click.command("finetune", context_settings={"ignore_unknown_options": True})
@click.argument("data", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--pretrained", type=click.Path(path_type=Path), required=True,
              help="pretrained checkpoint: an xlint pretrain checkpoint (its saved cfg gives the architecture and "
              "languages), or an XLM-R release folder / its model.pt (fine-tuned as --arch xlint_roberta)")
@click.option("--corpus", type=click.Path(path_type=Path, file_okay=False),
              help="the checkpoint's pretraining corpus (default: the one its cfg names); checked against the "
              "dictionary DATA was converted with")
@click.option("--save-dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="runs go to SAVE_DIR/<grid point>/seed<N>/, results to SAVE_DIR/results.{json,md}")
@click.option("--setting", type=click.Choice(SETTINGS), default="zero-shot", show_default=True,
              help="within: train/select/test on --source; zero-shot: train on --source, test on every target; "
              "few-shot: zero-shot plus --few-shot examples of each target's dev set in training; bilingual: "
              "train on --source and --targets mixed, select on their average dev score (Wu et al. 2022's "
              "θ_{src,tgt}; θ_tgt is --setting within --source TGT)")
@click.option("--source", required=True, help="training language (the language itself for --setting within)")
@click.option("--targets", help="comma-separated target languages (default: every other language of DATA)")
@click.option("--few-shot", type=click.IntRange(min=0), default=0, help="M examples per target (few-shot)")
@click.option("--select", type=click.Choice(SELECTIONS),
              help="model selection on the source dev set (default; the paper's zero-shot rule), the average "
              "of the target dev sets, or the average of all dev sets")
@click.option("--metric", help="selection metric: f1/acc (POS), f1 (NER, QA), acc (XNLI) [default: f1, XNLI acc]")
@click.option("--seeds", default="1", show_default=True, help="comma-separated seeds; results are mean ± std")
@click.option("--grid", type=click.Choice(["none", "paper"]), default="none", show_default=True,
              help="paper: Wang et al. App. A (batch {16,32} x lr {2,3,5}e-5; XNLI batch {4,8} x encoder lr "
              "{1e-6,5e-6,2e-5} x classifier lr {5e-6,2e-5,5e-5})")
@click.option("--batch-size", "batch_sizes", help="comma-separated batch sizes (overrides the grid's)")
@click.option("--lr", "lrs", help="comma-separated (encoder) learning rates (overrides the grid's)")
@click.option("--head-lr", "head_lrs", help="comma-separated task-head learning rates (default: --lr; XNLI 2e-5)")
@click.option("--epochs", type=click.IntRange(min=1),
              help="epochs [default: the paper's: NER/POS 10, QA 2, XNLI 200]")
@click.option("--warmup-ratio", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="linear warm-up over this fraction of the updates, then linear decay to 0")
@click.option("--max-length", type=click.IntRange(min=8), help="input length in subwords [128; QA 384]")
@click.option("--max-train-examples", type=click.IntRange(min=0), default=0,
              help="train on a fixed random subset of this many examples per language (0: all)")
@click.option("--freeze-language-specific", is_flag=True,
              help="keep the language-specific modules at their pretrained values (xlm_adapter only)")
@click.option("--freeze", "freeze_weights",
              help="LAYERS:SUBLAYER,...: keep these weights at their pretrained values (Guo et al. Table 1: "
              "1-4:all, 1-4:attn, 1-4:ffn; also embeddings), the layers' language-specific modules included")
@click.option("--lr-scale", "lr_scale_weights",
              help="LAYERS:SUBLAYER=FACTOR: these weights train at FACTOR x the learning rate (Guo et al. Table 1: "
              "11-12:all=10, 11-12:attn=10, 11-12:ffn=10 for 12 layers)")
@click.option("--reinit", "reinit_weights",
              help="LAYERS:SUBLAYER,...: re-initialise these pretrained weights before the first update (Guo et "
              "al. Table 6: 1-4:all, 1-4:attn, 1-4:ffn; BERT's init, seeded by the run's seed)")
@click.option("--route-languages",
              help="LANG=MODEL_LANG,...: modules for languages the model lacks (xlm_adapter only)")
@click.option("--method", type=click.Choice(list(METHODS)), default="df", show_default=True,
              help="Guo et al. (2023): df (plain fine-tuning), fsf (fine-tuning slow and fast), fs, ff, noisytune "
              "(Wu et al. 2022), or a Table 8 ablation (only-s1, only-s2, s2-to-s1, only-v1, only-v2, v2-to-v1)")
@click.option("--fsf-c1", type=float, help="K of Policy I (S^I slowed in the fast phase) [0.01]")
@click.option("--fsf-c2", type=float, help="K of Policy IV (V^II sped up in the slow phase) [10]")
@click.option("--fsf-r", type=float, help="r in R = max(1 - phi^r, 0) [3]")
@click.option("--fsf-window", type=click.IntRange(min=1),
              help="loss window w of the phase detector, in updates [100]; P2 needs at least 2w updates")
@click.option("--fsf-threshold", type=float, help="fast phase iff the mean loss (nats) fell by more than this [0.1]")
@click.option("--fsf-s1", help="set spec of S^I, e.g. 1-10:all (items A-B:all|attn|ffn, embeddings, head, none) "
              "[the depth rule]")
@click.option("--fsf-s2", help="set spec of S^II [12 layers: 1-4:ffn]")
@click.option("--fsf-v1", help="set spec of V^I [12 layers: 11-12:all]")
@click.option("--fsf-v2", help="set spec of V^II [12 layers: 11-12:attn]")
@click.option("--fsf-policy-iv", type=click.Choice(POLICY_IV_CHOICES),
              help="Policy IV: auto (on while the top two layers' CKA to the pretrained model falls), on, off "
              "[auto; off on NER data, as the paper]")
@click.option("--fsf-cka-interval", type=click.IntRange(min=0), help="updates between CKA probes (auto) [100]")
@click.option("--curve-interval", type=click.IntRange(min=0), default=0,
              help="training curves (RUN_DIR/curves.jsonl): dev gap P_src - mean P_tgt on a fixed dev subset and the "
              "training loss at update 0 and every N updates (Guo et al. 2023 use 100; 0: none)")
@click.option("--curve-examples", type=click.IntRange(min=0),
              help="dev examples per language in the curves' fixed subset [200; 0: the whole dev set]")
@click.option("--curve-cka", is_flag=True,
              help="curves also hold each layer's linear CKA to the pretrained model (Guo et al. 2023, Fig. 6)")
@click.option("--noisytune-lambda", type=click.FloatRange(min=0), help="NoisyTune's noise scale lambda [0.15]")
@click.option("--cpu", is_flag=True, help="train and evaluate on CPU")
@click.option("--cpu-threads", type=click.IntRange(min=1), help="OMP/MKL threads of the training processes")
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="evaluate the selected checkpoints on the test sets")
@click.option("--dry-run", is_flag=True, help="print the fairseq-train commands only")
@click.option("--quiet", "-q", is_flag=True, help="no progress lines")
@click.option("--verbose", "-v", is_flag=True, help="show fairseq-train's whole output")
@click.argument("fairseq_args", nargs=-1, type=click.UNPROCESSED)
def finetune(data: Path, pretrained: Path, corpus: Optional[Path], save_dir: Path, setting: str, source: str,
             targets: Optional[str], few_shot: int, select: Optional[str], metric: Optional[str], seeds: str,
             grid: str, batch_sizes: Optional[str], lrs: Optional[str], head_lrs: Optional[str],
             epochs: Optional[int], warmup_ratio: float, max_length: Optional[int], max_train_examples: int,
             freeze_language_specific: bool, freeze_weights: Optional[str],
             reinit_weights: Optional[str], lr_scale_weights: Optional[str], route_languages: Optional[str],
             method: str, fsf_c1: Optional[float],
             fsf_c2: Optional[float], fsf_r: Optional[float], fsf_window: Optional[int],
             fsf_threshold: Optional[float], fsf_s1: Optional[str], fsf_s2: Optional[str], fsf_v1: Optional[str],
             fsf_v2: Optional[str], fsf_policy_iv: Optional[str], fsf_cka_interval: Optional[int],
             curve_interval: int, curve_examples: Optional[int], curve_cka: bool,
             noisytune_lambda: Optional[float], cpu: bool, cpu_threads: Optional[int],
             evaluate: bool, dry_run: bool, quiet: bool, verbose: bool, fairseq_args: Tuple[str, ...]) -> None:
    """Fine-tune a pretrained model on DATA (from `xlint data convert`) and evaluate it.

    Every (batch size, learning rate, seed) is one fairseq-train run; the command
    line of each is printed. Arguments after `--` go to every fairseq-train
    unchanged and win over the generated ones (e.g. distributed flags:
    `-- --distributed-world-size 4`, or `--keep-last-epochs 1` to save disk).
    Finished runs are reused when the command is unchanged.
    """
    spec = FinetuneSpec(
        data=data, pretrained=pretrained, save_dir=save_dir, source=source, setting=setting,
        targets=parse_list(targets, str, "--targets"), few_shot=few_shot, select=select, metric=metric,
        seeds=parse_list(seeds, int, "--seeds") or [1], batch_sizes=parse_list(batch_sizes, int, "--batch-size"),
        lrs=parse_list(lrs, float, "--lr"), head_lrs=parse_list(head_lrs, float, "--head-lr"), grid=grid,
        epochs=epochs, warmup_ratio=warmup_ratio, max_length=max_length, max_train_examples=max_train_examples,
        freeze_language_specific=freeze_language_specific, freeze_weights=freeze_weights, reinit_weights=reinit_weights,
        lr_scale_weights=lr_scale_weights,
        route_languages=route_languages, corpus=corpus, cpu=cpu,
        cpu_threads=cpu_threads, evaluate=evaluate, dry_run=dry_run, quiet=quiet, verbose=verbose,
        fairseq_args=fairseq_args, curve_interval=curve_interval, curve_examples=curve_examples, curve_cka=curve_cka,
        method=MethodOptions(method=method, c1=fsf_c1, c2=fsf_c2, r=fsf_r, window=fsf_window, threshold=fsf_threshold,
                             s1=fsf_s1, s2=fsf_s2, v1=fsf_v1, v2=fsf_v2, policy_iv=fsf_policy_iv,
                             cka_interval=fsf_cka_interval, noisytune_lambda=noisytune_lambda))
    results = run_finetune(spec)
    if dry_run:
        return
    if "test" in results:
        click.echo((save_dir / "results.md").read_text(encoding="utf-8"))
    click.echo(f"results: {save_dir / 'results.json'}")


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--data", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="fine-tuning data folder (default: the one the checkpoint was trained on)")
@click.option("--split", type=click.Choice(["test", "dev"]), default="test", show_default=True)
@click.option("--languages", help="comma-separated languages (default: every language with the split)")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="output prefix: writes OUT.json and OUT.md (OUT may end in .json) "
              "[default: CHECKPOINT_DIR/eval-SPLIT]")
@click.option("--predictions", is_flag=True, help="also write OUT.predictions.jsonl (one line per example)")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--cpu", is_flag=True, help="evaluate on CPU even if a GPU is available")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
def evaluate(checkpoint: Path, data: Optional[Path], split: str, languages: Optional[str], out: Optional[Path],
             predictions: bool, batch_size: int, cpu: bool, quiet: bool) -> None:
    """Score a fine-tuned CHECKPOINT per language on a whole split (JSON + Markdown table)."""
    result = evaluate_checkpoint(checkpoint, data=data, split=split,
                                 languages=parse_list(languages, str, "--languages"),
                                 batch_size=batch_size, cpu=cpu, with_predictions=predictions, progress=not quiet)
    paths = evaluation_paths(out or checkpoint.parent / f"eval-{split}")
    records = result.pop("predictions", None)
    if records is not None:
        write_text_atomic(paths.predictions, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    table = evaluation_markdown(result)
    write_json_atomic(paths.json, result)
    write_text_atomic(paths.markdown, table)
    click.echo(table)
    click.echo(f"written: {paths.json}, {paths.markdown}" + (f", {paths.predictions}" if records is not None else ""))
