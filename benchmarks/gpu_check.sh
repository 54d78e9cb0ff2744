#!/usr/bin/env bash
# One prepared GPU check (issue 7), at most ~8 minutes on one H100/H200-class GPU:
#   1. the meta step under --amp, --bf16 and --fp16 against fp32 on the same batches, every mode
#      (benchmarks/meta_precision_check.py, paper shape);
#   2. step time and peak memory of hvp, central/forward FD, first-order and exact against plain
#      +adapter training at paper shape (benchmarks/bench_meta_step.py);
#   3. pretraining throughput at paper shape in bf16, as model FLOP utilisation
#      (benchmarks/bench_pretrain_throughput.py, roberta and adapter).
# Writes one JSON file: $1, or $OUT/gpu_check.json, or ./gpu_check.json.  CI never runs this.
#
#   bash benchmarks/gpu_check.sh                  # on the GPU machine, after `make install`
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SMOKE=1 bash benchmarks/gpu_check.sh /tmp/g.json   # plumbing, on CPU
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEVICE=${GPU_CHECK_DEVICE:-cuda}
RESULT=${1:-${OUT:-.}/gpu_check.json}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore

if [ -n "${GPU_CHECK_SMOKE:-}" ]; then
  ARCH=xlm_adapter_tiny; TOKENS=512; STEPS=2; LAYERS=2; DIM=64; MAXTOK=1024; UPDATES=12; WARM=4; PEXTRA=""
else
  ARCH=xlm_adapter_paper; TOKENS=8192; STEPS=10; LAYERS=8; DIM=512; MAXTOK=16384; UPDATES=120; WARM=40; PEXTRA="--bf16 --fp16-no-flatten-grads"
fi
[ "$DEVICE" = cpu ] && PEXTRA=""
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$WORK/gpu.txt"

step() { echo "[gpu_check $(date +%T)] $*" >&2; }
status=0
step "1/3 meta step per precision against fp32 ($ARCH)"
timeout 150 "$PY" benchmarks/meta_precision_check.py --device "$DEVICE" --arch "$ARCH" --tokens "$TOKENS" \
  --out "$WORK/precision.json" > "$WORK/precision.md" || status=1
step "2/3 meta step time and memory per mode ($ARCH, $TOKENS tokens)"
timeout 180 "$PY" benchmarks/bench_meta_step.py --device "$DEVICE" --arch "$ARCH" --tokens "$TOKENS" \
  --steps "$STEPS" --warmup 3 --out "$WORK/meta_step.json" > "$WORK/meta_step.md" || status=1
step "3/3 pretraining throughput ($LAYERS layers, d=$DIM, ${PEXTRA:-fp32})"
timeout 150 "$PY" benchmarks/bench_pretrain_throughput.py --device "$DEVICE" --variants roberta,adapter \
  --layers "$LAYERS" --dim "$DIM" --max-tokens "$MAXTOK" --updates "$UPDATES" --warmup-updates "$WARM" \
  --log-interval 10 --repeats 1 --num-workers 2 --extra-args "$PEXTRA" \
  --out "$WORK/throughput.json" > "$WORK/throughput.md" || status=1

"$PY" - "$WORK" "$RESULT" "$LAYERS" "$DIM" <<'PYEOF'
"""Gather the three parts into one JSON; model FLOP utilisation from tokens/s and parameters."""
import json, os, sys
from pathlib import Path

work, result, layers, dim = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
PEAK_BF16_FLOPS = 989.4e12  # H100/H200 SXM dense bf16 (the H200 machine here measured ~790e12 achievable)
SEQ = 128  # --tokens-per-sample of the throughput benchmark


def load(name):
    path = work / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


out = {"gpu": (work / "gpu.txt").read_text().strip() if (work / "gpu.txt").exists() else None,
       "precision": load("precision"), "meta_step": load("meta_step"), "throughput": None}
throughput = load("throughput")
if throughput:
    mfu = {}
    for variant, entry in throughput["summary"].items():
        params = (throughput.get("params", {}).get(variant) or {}).get("total") or (entry.get("params_logged") or [0])[0]
        wps = (entry.get("wps") or {}).get("median") or 0.0
        flops_per_token = 6 * params + 12 * layers * dim * SEQ  # weights (fwd+bwd) + attention scores
        mfu[variant] = {"tokens_per_s": wps, "parameters": params,
                        "model_flops_per_s": wps * flops_per_token, "mfu": wps * flops_per_token / PEAK_BF16_FLOPS}
    out["throughput"] = {"summary": throughput["summary"], "mfu": mfu}
for name in ("precision", "meta_step", "throughput"):
    md = work / f"{name}.md"
    out[f"{name}_table"] = md.read_text() if md.exists() else None
result.parent.mkdir(parents=True, exist_ok=True)
tmp = result.with_name(result.name + ".tmp")
tmp.write_text(json.dumps(out, indent=2, default=str))
os.replace(tmp, result)
print(f"wrote {result}")
PYEOF
cat "$WORK"/*.md
exit $status
