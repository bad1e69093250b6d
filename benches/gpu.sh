#!/usr/bin/env bash
# The GPU rows of benches/README.md: BERT-base training, batch 64 x 32, gcse
# on cuda (f32, bf16) and wgpu (f32) against PyTorch on the same GPU. Each row
# is one `benches/pair.sh` run (gcse, then PyTorch, then the ratio); the
# PyTorch-only rows compare with the gcse report of their precision.
#
#   GCSE=path/to/gcse benches/gpu.sh [ROW...]
#   rows: cuda-f32 cuda-bf16 wgpu-f32 torch-tf32 torch-bf16-pure torch-compile
#         (all by default, in that order)
#
# Results: $BENCH_OUT/<row>/ (default benches/results/gpu). MFU is taken
# against the H100 SXM's dense tensor-core peaks: 495 TFLOP/s for f32 inputs
# (TF32, which CubeCL's accelerated matrix products use) and 989 for bf16;
# pass PEAK_F32 / PEAK_BF16 for another card. The first CUDA step compiles
# and autotunes every kernel (2 to 5 minutes); CubeCL keeps its autotune
# choices in ./target/autotune, so a second run starts faster.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-benches/results/gpu}
f32=${PEAK_F32:-495} bf16=${PEAK_BF16:-989}
shape=(train bert-base)
run_row() { # row command...
  local row=$1; shift
  mkdir -p "$out/$row"
  BENCH_OUT="$out/$row" "$@" 2>&1 | tee "$out/$row/log"
  echo "== $row: exit ${PIPESTATUS[0]}"
}
torch_row() { # row variant peak gcse-row
  local json
  json=$(ls "$out/$4"/*.gcse.json 2>/dev/null | head -1)
  run_row "$1" python3 scripts/bench_torch.py "${shape[@]}" --batch-size 64 --seq-len 32 \
    --steps 20 --warmup 5 --device cuda --variant "$2" --peak-tflops "$3" \
    --json "$out/$1/torch.json" ${json:+--compare "$json"}
}
for row in ${@:-cuda-f32 cuda-bf16 wgpu-f32 torch-tf32 torch-bf16-pure torch-compile}; do
  case $row in
    cuda-f32) TORCH_ARGS="--peak-tflops $f32" run_row "$row" benches/pair.sh "${shape[@]}" cuda cuda 20 5 --peak-tflops "$f32" ;;
    cuda-bf16) TORCH_ARGS="--variant bf16 --peak-tflops $bf16" run_row "$row" benches/pair.sh "${shape[@]}" cuda cuda 20 5 --precision bf16 --peak-tflops "$bf16" ;;
    wgpu-f32) TORCH_ARGS="--peak-tflops $f32" run_row "$row" benches/pair.sh "${shape[@]}" wgpu cuda 20 5 --peak-tflops "$f32" ;;
    torch-tf32) torch_row "$row" tf32 "$f32" cuda-f32 ;;
    torch-bf16-pure) torch_row "$row" bf16-pure "$bf16" cuda-bf16 ;;
    torch-compile) torch_row "$row" compile "$f32" cuda-f32 ;;
    *) echo "unknown row $row" >&2; exit 2 ;;
  esac
done
