"""The cost of the training curves (``--curve-interval``): the gap's dev-subset validations and the CKA probe.

Runs ``xlint finetune`` on one pretrained checkpoint and one fine-tuning folder three times with the
same batches and seed, one thread each, one after the other: without curves, with
``--curve-interval N --curve-examples K``, and with ``--curve-cka`` added.  each curve row records the
seconds its measurement took (the median is reported; the whole runs are timed too), and a training
update's time is 1 / the median of
fairseq's ``ups`` over the log intervals of the run without curves, so

    cost of one point = the median of the rows' seconds
    overhead = cost of one point / (N * seconds per update)   (also at N = 100, the paper's)

is reported in seconds, in training updates, and as a fraction of 100 updates' training time.

    .venv/bin/python benchmarks/bench_training_curves.py \\
        --pretrained demo-runs/runs/joint-*/checkpoints/checkpoint_last.pt --data demo-runs/pos-data-* \\
        --source en --interval 10 --examples 200
"""
import argparse
import json
import statistics
import subprocess
import time
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple


def step_seconds(run_dir: Path) -> Dict[str, float]:
    """The seconds of one training update (1 / the median of fairseq's ``ups`` over the log intervals) and the
    number of updates of a finished run, from its JSON log."""
    from xlint.cli.fairseq_logs import parse_log_records

    lines = (run_dir / "train.log").read_text(encoding="utf-8").splitlines()
    rates = [float(r["ups"]) for r in parse_log_records(lines, "train_inner")]
    updates = int(float(parse_log_records(lines, "train")[-1]["train_num_updates"]))
    return {"step_seconds": 1.0 / statistics.median(rates), "updates": updates}


def finetune(args: argparse.Namespace, save_dir: Path, extra: List[str]) -> Tuple[Path, float]:
    command = [str(Path(sys.executable).parent / "xlint"), "finetune", str(args.data), "--pretrained",
               str(args.pretrained), "--source", args.source, "--save-dir", str(save_dir), "--cpu", "--cpu-threads",
               "1", "--quiet", "--no-evaluate", "--epochs", str(args.epochs), "--batch-size", "32", "--lr", "5e-4",
               "--max-train-examples", str(args.train_examples), *extra]
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return sorted(save_dir.glob("*/seed1"))[0], time.monotonic() - started


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
        run, seconds = finetune(args, work / name, extra)
        points = run / "curves.jsonl"
        rows = [json.loads(line) for line in points.read_text().splitlines()] if points.is_file() else []
        measured[name] = {"seconds": round(seconds, 2), "points": len(rows),
                          "point_seconds_median": round(statistics.median(r["seconds"] for r in rows), 4)
                          if rows else None}
    base = step_seconds(work / "none" / run.parent.name / "seed1")
    step = base["step_seconds"]
    report = {"interval": args.interval, "examples_per_language": args.examples, "updates": base["updates"],
              "seconds_per_update": round(step, 4), "runs": measured}
    for name in ("gap", "gap+cka"):
        per_point = measured[name]["point_seconds_median"]  # each row times its own measurement
        report[name] = {"seconds_per_point": round(per_point, 4), "updates_per_point": round(per_point / step, 2),
                        "overhead_at_this_interval": round(per_point / (args.interval * step), 4),
                        "overhead_at_one_point_per_100_updates": round(per_point / (100 * step), 4)}
    report["cka_probe_seconds"] = round(report["gap+cka"]["seconds_per_point"] - report["gap"]["seconds_per_point"], 4)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
