#!/usr/bin/env bash
# Every GPU row of benches/README.md in one run, so that a short GPU lease
# goes to measurement: BERT-base SimCSE training, batch 64 x 32, gcse on
# cuda (f32/TF32, bf16-mixed, pure bf16) and wgpu (f32, f16-mixed) against
# PyTorch on the same card (TF32 eager, bf16 autocast, pure bf16,
# torch.compile), the first step with cold and warm kernel caches, the host's
# enqueue time against the step's, and a CubeCL kernel profile.
#
#   GCSE=path/to/gcse benches/gpu.sh [ROW...]
#   GCSE=gcse.zst ...   a zstd-compressed binary is unpacked first
#   rows (all by default, in this order):
#     cuda-f32        cold kernel caches (a fresh $GCSE_CACHE): the first
#                     step compiles and autotunes every kernel
#     cuda-f32-warm   the same again, caches warm
#     cuda-bf16-mixed f32 weights, bf16 products   vs PyTorch bf16 autocast
#     cuda-bf16       everything bf16              vs PyTorch pure bf16
#     wgpu-f32        vs PyTorch strict f32
#     wgpu-f16-mixed  f32 weights, f16 products, loss scaling
#                                                  vs PyTorch f16 autocast + GradScaler
#     torch-tf32 torch-compile   PyTorch rows for the cuda-f32 report
#     profile         CubeCL's kernel profile of 3 cuda-f32 steps
#
# Each gcse row is one `benches/pair.sh` run (gcse, then PyTorch, then the
# ratio). Results: $BENCH_OUT/<row>/ (default benches/results/gpu), and all
# reports together in $BENCH_OUT/summary.json. MFU is taken against the
# H100 SXM's dense tensor-core peaks, 495 TFLOP/s for TF32 and 989 for
# bf16; pass PEAK_F32 / PEAK_BF16 for another card (H200: the same).
# STEPS / WARMUP (default 20 / 5) set every row's steps.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-benches/results/gpu}
f32=${PEAK_F32:-495} bf16=${PEAK_BF16:-989}
steps=${STEPS:-20} warmup=${WARMUP:-5}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export GCSE_CACHE=${GCSE_CACHE:-$out/cache}
gcse=${GCSE:-target/release/gcse}
if [[ $gcse == *.zst ]]; then
  zstd -dqf "$gcse" -o "$out/gcse" && chmod +x "$out/gcse" && gcse=$out/gcse
fi
export GCSE=$(realpath "$gcse")
shape=(train bert-base)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/device.txt" 2>&1
run_row() { # row command...
  local row=$1; shift
  mkdir -p "$out/$row"
  local start=$SECONDS
  BENCH_OUT="$out/$row" "$@" 2>&1 | tee "$out/$row/log"
  echo "== $row: exit ${PIPESTATUS[0]}, $((SECONDS - start)) s"
}
torch_row() { # row variant peak gcse-row
  local json
  json=$(ls "$out/$4"/*.gcse.json 2>/dev/null | head -1)
  run_row "$1" python3 scripts/bench_torch.py "${shape[@]}" --batch-size 64 --seq-len 32 \
    --steps "$steps" --warmup "$warmup" --device cuda --variant "$2" --peak-tflops "$3" \
    --json "$out/$1/torch.json" ${json:+--compare "$json"}
}
pair() { # row backend peak torch-args gcse-args...
  local row=$1 backend=$2 peak=$3 torch=$4; shift 4
  TORCH_ARGS="$torch --peak-tflops $peak" run_row "$row" benches/pair.sh "${shape[@]}" \
    "$backend" cuda "$steps" "$warmup" --peak-tflops "$peak" "$@"
}
profile() {
  local dir="$out/profile"
  mkdir -p "$dir"
  printf '[profiling.logger]\nlevel = "basic"\nfile = "%s/kernels.log"\n' "$dir" > "$dir/cubecl.toml"
  (cd "$dir" && "$GCSE" bench train --model bert-base --batch-size 64 --seq-len 32 \
    --steps 3 --warmup 2 --backend cuda) > "$dir/log" 2>&1
  python3 scripts/cubecl_profile.py "$dir/kernels.log" --top 25 | tee "$dir/summary.txt"
}
for row in ${@:-cuda-f32 cuda-f32-warm cuda-bf16-mixed cuda-bf16 wgpu-f32 wgpu-f16-mixed torch-tf32 torch-compile profile}; do
  case $row in
    cuda-f32) rm -rf "$GCSE_CACHE/cubecl"; pair "$row" cuda "$f32" "" ;;
    cuda-f32-warm) pair "$row" cuda "$f32" "--variant tf32" ;;
    cuda-bf16-mixed) pair "$row" cuda "$bf16" "--variant bf16" --precision bf16-mixed ;;
    cuda-bf16) pair "$row" cuda "$bf16" "--variant bf16-pure" --precision bf16 ;;
    wgpu-f32) pair "$row" wgpu "$f32" "" ;;
    wgpu-f16-mixed) pair "$row" wgpu "$bf16" "--variant f16" --precision f16-mixed ;;
    torch-tf32) torch_row "$row" tf32 "$f32" cuda-f32-warm ;;
    torch-compile) torch_row "$row" compile "$f32" cuda-f32-warm ;;
    profile) run_row "$row" profile ;;
    *) echo "unknown row $row" >&2; exit 2 ;;
  esac
done
python3 - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = {}
for path in sorted(out.glob("*/*.json")):
    rows.setdefault(path.parent.name, {})[path.stem] = json.loads(path.read_text())
(out / "summary.json").write_text(json.dumps(rows, indent=1))
print(f"wrote {out / 'summary.json'} ({len(rows)} rows)")
EOF
