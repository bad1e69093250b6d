#!/usr/bin/env bash
# One side-by-side row: `gcse bench` then scripts/bench_torch.py on the same
# workload, the second printing the ratio. Results go to $BENCH_OUT (default
# benches/results) as <workload>-<model>-<backend>.{gcse,torch}.json.
#
#   benches/pair.sh WORKLOAD MODEL BACKEND DEVICE STEPS WARMUP [extra gcse args]
#   e.g. benches/pair.sh train bert-base cpu cpu 5 1
set -euo pipefail
cd "$(dirname "$0")/.."
workload=$1 model=$2 backend=$3 device=$4 steps=$5 warmup=$6
shift 6
out=${BENCH_OUT:-benches/results}
mkdir -p "$out"
gcse=${GCSE:-target/release/gcse}
stem="$out/$workload-$model-$backend"
shape=(--model "$model" --batch-size "${BATCH:-64}" --seq-len "${SEQ:-32}" --steps "$steps" --warmup "$warmup")
"$gcse" bench "$workload" "${shape[@]}" --backend "$backend" --json "$stem.gcse.json" "$@"
python3 scripts/bench_torch.py "$workload" "${shape[@]}" --device "$device" \
  --json "$stem.torch.json" --compare "$stem.gcse.json" ${TORCH_ARGS:-}
