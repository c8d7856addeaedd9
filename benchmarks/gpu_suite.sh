#!/usr/bin/env bash
# srprior GPU suite, one command on a GPU host with torch (< 8 min by the parts' own time limits), from the
# repository root:
#     bash benchmarks/gpu_suite.sh
# Prints one Markdown table (also $OUT/gpu_suite.md; logs beside it; OUT defaults to outputs/gpu-suite) and writes
# the efficiency data the plan's cost model reads ($OUT/efficiency.json and platform/srprior/efficiency.json):
#   1. step cost: benchmarks/step_cost.py on CUDA for $PRESETS (default edsr-t rcan-t rnan-t), every lever in one
#      process per preset: eager (torch defaults), tf32, bf16, channels-last, cuda-graph, bf16+cuda-graph (ms per
#      plain and prior step, extractor share, peak memory); then one EDSR-B plain and prior step (eager, bf16) and
#      EDSR-T-BN's and EDSR-T-15's (eager, bf16): fp32 and bf16 entries for every preset of the tables, from which
#      the GPU budgets choose each trial's precision;
#   2. fused throughput: benchmarks/fused_throughput.py --device cuda, plain and prior: edsr-t K = 1 4 16, rcan-t
#      and rnan-t K = 1 4, and edsr-t K = 1 16 with --cuda-graph (fused and separate steps both captured);
#   3. a 4-trial smoke sweep on the GPU (1/4 GPU per trial, 300 steps) end to end through Ray Tune + Train and
#      MLflow; per-trial steps/s, aggregate steps/s and start-up read back from the MLflow store.
# Each part has a time limit (together 480 s); one that fails or times out is a row of the table, the others
# still run. Ray/MLflow/Optuna: when python cannot import them, they are installed from a carried .whl/ into
# /tmp/site (build .whl/ on a networked machine with ../shared/tools/device-wheels.sh, from the repository root).
# Without `pip install -e .`, the package tree is linked the way pyproject.toml maps it. MLflow's tracking server
# needs Flask (absent from mlflow-skinny): without it the sweep writes to its SQLite store directly.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/outputs/gpu-suite}
PRESETS=${PRESETS:-edsr-t rcan-t rnan-t}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
unset SRPRIOR_DATA  # train and validate on the embedded images: no data to carry, no loading cost

if ! $PY -c "import ray, mlflow, optuna" 2>/dev/null; then
  if [ ! -d .whl ]; then
    echo "Ray/MLflow/Optuna are missing and there is no .whl/ (../shared/tools/device-wheels.sh)" >&2
    exit 1
  fi
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if ! $PY -c "import srprior.trainers, srprior.search_spaces" 2>/dev/null; then
  src=$(mktemp -d)
  mkdir "$src/srprior" && cp -rs "$PWD/platform/srprior/." "$src/srprior/"
  ln -s "$PWD/trainers" "$src/srprior/trainers" && ln -s "$PWD/search_spaces" "$src/srprior/search_spaces"
  export PYTHONPATH=$src${PYTHONPATH:+:$PYTHONPATH}
fi
device=$($PY -c "import torch; print(torch.cuda.get_device_name(), '| torch', torch.__version__)") || exit 1
work=$(mktemp -d)  # the sweep's Ray results, MLflow store and artifacts (thousands of files: not under $OUT)
mkdir -p "$work/sweep"
: > "$OUT/parts.txt"

part() {  # part NAME LIMIT_S COMMAND...: run with a time limit, log to $OUT/NAME.log, record exit status and time
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  echo "== $name (limit ${limit} s)" >&2
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "$name $rc $((SECONDS - t0))s" >> "$OUT/parts.txt"
}

# shellcheck disable=SC2086  # $PRESETS: one word per preset
part step_cost 140 $PY benchmarks/step_cost.py --device cuda --presets $PRESETS --iters 10 \
  --variants eager tf32 bf16 channels-last cuda-graph bf16+cuda-graph
part edsr_b 40 $PY benchmarks/step_cost.py --device cuda --presets edsr-b --iters 5 --variants eager bf16
# the thesis's other presets, fp32 and bf16: a budget trains a preset in bf16 only where its own bf16 step was
# measured faster (srprior.cost.measured_precision), so every preset of the tables needs both entries
part step_cost_ablations 40 $PY benchmarks/step_cost.py --device cuda --presets edsr-t-bn edsr-t-15 --iters 10 \
  --variants eager bf16
part fused 40 $PY benchmarks/fused_throughput.py --device cuda --iters 5 --ks 1 4 16
part fused_rcan 35 $PY benchmarks/fused_throughput.py --device cuda --preset rcan-t --iters 3 --repeats 2 --ks 1 4
part fused_rnan 35 $PY benchmarks/fused_throughput.py --device cuda --preset rnan-t --iters 3 --repeats 2 --ks 1 4
part fused_graph 30 $PY benchmarks/fused_throughput.py --device cuda --iters 5 --repeats 2 --ks 1 16 --cuda-graph
store="MLflow server"
if ! $PY -c "import flask" 2>/dev/null; then
  export MLFLOW_TRACKING_URI="sqlite:///$work/sweep/mlflow.db" store="SQLite directly (no Flask for a server)"
fi
# validation and checkpoints every 100 steps instead of the smoke budget's 10: start-up, not bookkeeping
part sweep 120 $PY sweep.py --table smoke --budget smoke --seeds 2 --steps 300 --gpus-per-trial 0.25 \
  --set val_every=100 --set ckpt_every=100 --address local --output-dir "$work/sweep"

echo "# srprior GPU suite, $(date -u +%F), $device; sweep: 4 trials x 1/4 GPU, MLflow via $store" > "$OUT/header.txt"
$PY benchmarks/gpu_suite_table.py "$OUT" "sqlite:///$work/sweep/mlflow.db"
