#!/usr/bin/env bash
# A bounded fuzzing run for CI, on stable Rust and without cargo-fuzz.
#
# Builds every target in fuzz_targets/ with the SanitizerCoverage
# instrumentation cargo-fuzz would add (less AddressSanitizer, which needs
# nightly), then runs each for FUZZ_SECONDS from the committed seeds. Fails if
# a target crashes, or if libFuzzer saw no coverage (instrumentation lost).
#
#   FUZZ_SECONDS=20 bash fuzz/smoke.sh           # every target
#   FUZZ_SECONDS=60 bash fuzz/smoke.sh frame     # some targets
#
# Everything it makes stays under fuzz/target/smoke/, apart from cargo-fuzz's
# builds. A crashing input lands in fuzz/target/smoke/artifacts/<target>/;
# replay it with `fuzz/target/smoke/build/<triple>/release/<target> <file>`.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-20}"
host="$(rustc -vV | sed -n 's/^host: //p')"
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  # Each target's binary is named after its file.
  for source in fuzz_targets/*.rs; do
    targets+=("$(basename "$source" .rs)")
  done
fi

# cargo-fuzz's flags for libFuzzer's coverage feedback; `--target` keeps them
# off build scripts and proc macros, which run on the host uninstrumented.
unset CARGO_ENCODED_RUSTFLAGS
export RUSTFLAGS="-Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  -Cllvm-args=-sanitizer-coverage-stack-depth \
  --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
work=target/smoke
build_start=$SECONDS
cargo build --release --bins --target "$host" --target-dir "$work/build"
echo "fuzz: built in $((SECONDS - build_start)) s"

failed=()
summary=()
for t in "${targets[@]}"; do
  # A fresh corpus each run, so CI runs are alike; libFuzzer adds what it
  # finds to the first directory and only reads the seeds.
  rm -rf "$work/corpus/$t" "$work/artifacts/$t"
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t" "$work/logs"
  log="$work/logs/$t.log"
  options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
    -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/")
  if [ -f "dict/$t.dict" ]; then
    options+=(-dict="dict/$t.dict")
  fi
  echo "fuzz: $t for $seconds s"
  status=0
  "$work/build/$host/release/$t" "${options[@]}" "$work/corpus/$t" "seeds/$t" >"$log" 2>&1 || status=$?

  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  per_sec="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)"
  corpus="$(grep -o 'corp: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)"
  summary+=("$(printf '%-12s %10s runs %8s/s  cov %5s  corpus %5s' \
    "$t" "${runs:-?}" "${per_sec:-?}" "${cov:-0}" "${corpus:-?}")")

  if [ "$status" -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $status); the end of its log:" >&2
    tail -n 40 "$log" >&2
    for input in "$work/artifacts/$t"/*; do
      [ -f "$input" ] || continue
      echo "fuzz: reproducer $input (base64: $(head -c 4096 "$input" | base64 -w0))" >&2
    done
    failed+=("$t")
  elif ! grep -q 'inline 8-bit counters' "$log" || [ "${cov:-0}" -eq 0 ]; then
    echo "fuzz: $t ran without coverage feedback: the build lost its instrumentation" >&2
    tail -n 20 "$log" >&2
    failed+=("$t")
  fi
done

echo "fuzz: summary ($SECONDS s in all, build included)"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
