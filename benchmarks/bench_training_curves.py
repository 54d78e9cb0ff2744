"""The cost of the training curves (``--curve-interval``): the gap's dev-subset validations and the CKA probe.

Runs ``xlint finetune`` on one pretrained checkpoint and one fine-tuning folder three times with the
same batches and seed, one thread each, one after the other: without curves, with
``--curve-interval N --curve-examples K``, and with ``--curve-cka`` added.  fairseq's epoch records
carry ``train_wall`` (seconds inside the training loop, where the curve points are measured), so

    cost of one point = (train_wall with curves - train_wall without) / points
    overhead = cost of one point / (N * train_wall without / updates)   (also at N = 100, the paper's)

is reported in seconds, in training updates, and as a fraction of 100 updates' training time.

    .venv/bin/python benchmarks/bench_training_curves.py \\
        --pretrained demo-runs/runs/joint-*/checkpoints/checkpoint_last.pt --data demo-runs/pos-data-* \\
        --source en --interval 10 --examples 200
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List


def train_wall(run_dir: Path) -> Dict[str, float]:
    """Seconds in the training loop and updates of a finished run, from its JSON log's epoch records."""
    from xlint.cli.fairseq_logs import parse_log_records

    records = parse_log_records((run_dir / "train.log").read_text(encoding="utf-8").splitlines(), "train")
    return {"train_wall": float(records[-1]["train_wall"]), "updates": int(float(records[-1]["num_updates"]))}


def finetune(args: argparse.Namespace, save_dir: Path, extra: List[str]) -> Path:
    command = [str(Path(sys.executable).parent / "xlint"), "finetune", str(args.data), "--pretrained",
               str(args.pretrained), "--source", args.source, "--save-dir", str(save_dir), "--cpu", "--cpu-threads",
               "1", "--quiet", "--no-evaluate", "--epochs", str(args.epochs), "--batch-size", "32", "--lr", "5e-4",
               "--max-train-examples", str(args.train_examples), *extra]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    runs = sorted(save_dir.glob("*/seed1"))
    return runs[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="an `xlint data convert` folder")
    parser.add_argument("--source", default="en")
    parser.add_argument("--interval", type=int, default=10, help="updates between curve points")
    parser.add_argument("--examples", type=int, default=200, help="dev examples per language per point")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-examples", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-curves-"))
    curve = ["--curve-interval", str(args.interval), "--curve-examples", str(args.examples)]
    settings = {"none": [], "gap": curve, "gap+cka": curve + ["--curve-cka"]}
    measured = {}
    for name, extra in settings.items():
        run = finetune(args, work / name, extra)
        measured[name] = train_wall(run)
        points = run / "curves.jsonl"
        measured[name]["points"] = len(points.read_text().splitlines()) if points.is_file() else 0
    base = measured["none"]
    step = base["train_wall"] / base["updates"]
    report = {"interval": args.interval, "examples_per_language": args.examples, "updates": base["updates"],
              "seconds_per_update": round(step, 4), "runs": measured}
    for name in ("gap", "gap+cka"):
        extra = measured[name]["train_wall"] - base["train_wall"]
        per_point = extra / max(1, measured[name]["points"])
        report[name] = {"seconds_per_point": round(per_point, 4), "updates_per_point": round(per_point / step, 2),
                        "overhead_at_this_interval": round(per_point / (args.interval * step), 4),
                        "overhead_at_one_point_per_100_updates": round(per_point / (100 * step), 4)}
    report["cka_probe_seconds"] = round(report["gap+cka"]["seconds_per_point"] - report["gap"]["seconds_per_point"], 4)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
