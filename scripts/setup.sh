#!/usr/bin/env bash
# From a fresh clone to a `gcse` on PATH that can run the quickstart:
#
#   1. system packages: a C toolchain (tokenizers' onig), pkg-config,
#      OpenBLAS (the CPU backend's matrix products), Python with venv (the
#      model fetcher), Mesa's Vulkan driver (the wgpu backend without a
#      GPU). apt on Debian/Ubuntu, brew on macOS; it says what it installs
#      first, and installs only what is missing.
#   2. Rust >= 1.92 (Burn 0.21's minimum), or a message saying how to get it.
#   3. Python steps in a virtual environment ($GCSE_CACHE/venv), never the
#      system interpreter.
#   4. the model (scripts/fetch-model.sh: all-MiniLM-L6-v2 into models/).
#   5. the STS data and corpora: $GCSE_DATA, ../shared/data or
#      $GCSE_CACHE/data, checked file by file.
#   6. `cargo install --path .` (into ~/.cargo/bin, which rustup puts on
#      PATH).
#
# Then: gcse train --config configs/quickstart.toml
#
# GCSE_SETUP_NO_SYSTEM=1 skips step 1 (no root, packages already there).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

export GCSE_CACHE=${GCSE_CACHE:-$HOME/.cache/gcse}
mkdir -p "$GCSE_CACHE"

# 1. System packages.
if [ "${GCSE_SETUP_NO_SYSTEM:-0}" != 1 ]; then
  case "$(uname -s)" in
    Linux)
      command -v apt-get >/dev/null \
        || die "not Debian/Ubuntu: install a C compiler, pkg-config, OpenBLAS (dev files), Python 3 with venv and Mesa's Vulkan driver with your package manager, then rerun with GCSE_SETUP_NO_SYSTEM=1"
      wanted=(build-essential pkg-config libopenblas-dev python3 python3-venv mesa-vulkan-drivers libvulkan1)
      missing=()
      for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
      done
      if [ ${#missing[@]} -gt 0 ]; then
        say "installing with apt-get: ${missing[*]}"
        sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -q
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
      else
        say "system packages: all there (${wanted[*]})"
      fi
      ;;
    Darwin)
      xcode-select -p >/dev/null 2>&1 || die "install the command line tools first: xcode-select --install"
      command -v brew >/dev/null || die "install Homebrew (https://brew.sh), then rerun"
      missing=()
      for p in openblas python; do brew list "$p" >/dev/null 2>&1 || missing+=("$p"); done
      if [ ${#missing[@]} -gt 0 ]; then
        say "installing with brew: ${missing[*]}"
        brew install "${missing[@]}"
      fi
      ;;
    *) die "$(uname -s): set up by hand (see README)" ;;
  esac
fi

# 2. Rust.
need=1.92
if ! command -v cargo >/dev/null; then
  die "no Rust toolchain: install rustup (https://rustup.rs: curl --proto '=https' -sSf https://sh.rustup.rs | sh), open a new shell, rerun"
fi
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
  hint="install rustup (https://rustup.rs); distribution packages are too old"
  command -v rustup >/dev/null && hint="run: rustup update stable"
  die "Rust $have is older than $need, which Burn 0.21 needs: $hint"
fi
say "Rust $have"

# 3. Python in a virtual environment.
venv=$GCSE_CACHE/venv
if [ ! -x "$venv/bin/python3" ]; then
  say "Python virtual environment in $venv"
  python3 -m venv "$venv" || die "python3 -m venv failed: install python3-venv"
fi
export PATH="$venv/bin:$PATH"

# 4. The model.
say "model: all-MiniLM-L6-v2"
bash scripts/fetch-model.sh

# 5. Data.
data=""
for d in "${GCSE_DATA:-}" ../shared/data "$GCSE_CACHE/data"; do
  if [ -n "$d" ] && [ -d "$d/senteval/STS" ] && [ -d "$d/corpus" ]; then data=$d; break; fi
done
[ -n "$data" ] || die "no STS data and corpora found in \$GCSE_DATA, ../shared/data or $GCSE_CACHE/data.
Put them in $GCSE_CACHE/data (gcse looks there last), laid out as:
  senteval/STS/STS12-en-test .. STS16-en-test, senteval/STS/STSBenchmark/sts-{train,dev,test}.csv,
  senteval/SICK/SICK_{train,trial,test_annotated}.txt   (SentEval's data/downstream, from its get_transfer_data.bash)
  corpus/wiki1m-sample.txt (lines of SimCSE's wiki1m_for_simcse.txt), corpus/snli/{s1,s2,labels}.{dev,test}"
for f in senteval/STS/STSBenchmark/sts-dev.csv senteval/STS/STSBenchmark/sts-train.csv \
         senteval/SICK/SICK_train.txt senteval/SICK/SICK_trial.txt senteval/SICK/SICK_test_annotated.txt \
         corpus/wiki1m-sample.txt corpus/snli/s1.dev corpus/snli/s2.dev; do
  [ -s "$data/$f" ] || die "$data/$f is missing or empty"
done
say "data: $data"

# 6. The binary.
say "building and installing gcse (release; the first build takes a while)"
cargo install --locked --path . --quiet
bin=$(command -v gcse || true)
[ -n "$bin" ] || die "gcse was installed into ~/.cargo/bin, which is not on PATH: add it (export PATH=\$HOME/.cargo/bin:\$PATH)"
say "$("$bin" --version) at $bin"
if [ "$data" != ../shared/data ] && [ "$data" != "$GCSE_CACHE/data" ]; then
  echo "export GCSE_DATA=$data in your shell (gcse finds ../shared/data and $GCSE_CACHE/data by itself)"
fi
echo "next: gcse train --config configs/quickstart.toml"
