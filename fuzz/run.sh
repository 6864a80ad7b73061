#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) and keeps the corpus small.
#   fuzz/run.sh [seconds-per-target]
# Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable toolchain is enough with
# RUSTC_BOOTSTRAP=1 (set below). Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
export RUSTC_BOOTSTRAP=1
for target in decode_batch webhook_verify mdm_snapshot wal_recovery trusted_scan timestamps dead_letters; do
  echo "== $target (${seconds}s)"
  mkdir -p "corpus/$target"
  cargo fuzz run "$target" "corpus/$target" seeds/"$target" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=1
  # Keep only inputs that add coverage.
  cargo fuzz cmin "$target" "corpus/$target" >/dev/null 2>&1 || true
done
