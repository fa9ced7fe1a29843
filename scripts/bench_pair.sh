#!/usr/bin/env bash
# Paired CPU benchmark, robust-paf against PyTorch on the same cores (issue 11).
#
# Each (row, activation) runs in its own process, the crate's `examples/bench_cpu.rs` and
# `scripts/bench_torch.py` back to back, for --rounds rounds; odd rounds start with the crate,
# even rounds with PyTorch, so a machine whose speed drifts (±15 % within an hour on the 2-core CI
# machines) weighs on both sides alike. Per row it prints the median over rounds of the per-round
# time ratio crate / PyTorch (and its min–max), each side's median time, and each side's peak
# resident memory (the process's high-water mark: one row per process). A second ratio uses each
# process's fastest repetition instead of its median ("best of reps": on a machine whose
# neighbours slow some repetitions down, the fastest is the least disturbed). Without PyTorch it
# says so and prints the crate's numbers alone.
#
#   scripts/bench_pair.sh [--rounds 3] [--rows train32,train128,pgd128,at128]
#       [--acts relu,pssilu] [--threads 2] [--reps 3] [--at-reps 1] [--tsv FILE] [--quick]
#   scripts/bench_pair.sh --install-torch     # a venv with the CPU PyTorch, ≈ 3 min
#   scripts/bench_pair.sh --summarize FILE    # the table again from a --tsv FILE of earlier runs
#
# PyTorch: $TORCH_PYTHON, else the venv $ROBUST_PAF_TORCH_VENV (default
# ~/.cache/robust-paf/torch-venv) made by --install-torch, else `python3` if it imports torch.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="${ROBUST_PAF_TORCH_VENV:-$HOME/.cache/robust-paf/torch-venv}"

rounds=3 rows="train32,train128,pgd128,at128" acts="relu,pssilu" threads=2 reps=3 at_reps=1
tsv="" install=0 summarize=""
die() { echo "bench_pair: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="${2:?}"; shift 2 ;;
    --rows) rows="${2:?}"; shift 2 ;;
    --acts) acts="${2:?}"; shift 2 ;;
    --threads) threads="${2:?}"; shift 2 ;;
    --reps) reps="${2:?}"; shift 2 ;;
    --at-reps) at_reps="${2:?}"; shift 2 ;;
    --tsv) tsv="${2:?}"; shift 2 ;;
    --quick) rounds=2 rows="train8,pgd8,at8" reps=1; shift ;;
    --install-torch) install=1; shift ;;
    --summarize) summarize="${2:?}"; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
for n in "$rounds" "$threads" "$reps" "$at_reps"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "expected a positive number, got '$n'"
done

# summary TSV: the table of a results file (one line per process)
summary() {
  python3 - "$1" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
keys = []
for r in rows:
    k = (r["row"], r["act"])
    if k not in keys:
        keys.append(k)
def med(v):
    return statistics.median(v) if v else float("nan")
print("| row | act | robust-paf ms | PyTorch ms | crate / PyTorch: median (min–max) "
      "| best of reps: crate / PyTorch | peak RSS MiB crate / PyTorch |")
print("|---|---|---|---|---|---|---|")
for row, act in keys:
    side = lambda s: {int(r["round"]): r for r in rows if (r["row"], r["act"], r["side"]) == (row, act, s)}
    c, t = side("crate"), side("torch")
    cm = med([float(r["median_ms"]) for r in c.values()])
    crss = max(float(r["peak_rss_mb"]) for r in c.values())
    if t:
        tm = med([float(r["median_ms"]) for r in t.values()])
        ratios = [float(c[k]["median_ms"]) / float(t[k]["median_ms"]) for k in c if k in t]
        best = [float(c[k]["min_ms"]) / float(t[k]["min_ms"]) for k in c if k in t]
        trss = max(float(r["peak_rss_mb"]) for r in t.values())
        print(f"| {row} | {act} | {cm:.1f} | {tm:.1f} | **{med(ratios):.2f}** "
              f"({min(ratios):.2f}–{max(ratios):.2f}) | {med(best):.2f} "
              f"({min(best):.2f}–{max(best):.2f}) | {crss:.0f} / {trss:.0f} |")
    else:
        print(f"| {row} | {act} | {cm:.1f} | – | – | – | {crss:.0f} / – |")
EOF
}

if [ -n "$summarize" ]; then
  [ -r "$summarize" ] || die "cannot read $summarize"
  summary "$summarize"
  exit 0
fi

if [ "$install" = 1 ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch numpy
  "$venv/bin/python" -c 'import torch; print("PyTorch", torch.__version__, "in", __import__("sys").prefix)'
  exit 0
fi

torch_py=""
for py in "${TORCH_PYTHON:-}" "$venv/bin/python" python3; do
  [ -n "$py" ] || continue
  if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import torch' >/dev/null 2>&1; then
    torch_py="$py"; break
  fi
done
if [ -z "$torch_py" ]; then
  echo "bench_pair: PyTorch not found (TORCH_PYTHON, $venv, python3): the crate's numbers alone." >&2
  echo "bench_pair: install it with: scripts/bench_pair.sh --install-torch" >&2
fi

cd "$root"
echo "bench_pair: building examples/bench_cpu (release)" >&2
cargo build --release --quiet --example bench_cpu
crate_bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/bench_cpu"
[ -x "$crate_bin" ] || die "no binary at $crate_bin"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
results="${tsv:-$tmp/results.tsv}"
printf 'round\tside\trow\tact\tmedian_ms\tmin_ms\tmax_ms\tpeak_rss_mb\n' > "$results"

# run_side SIDE ROUND ROW ACT: one process, one row; appends its line to the results
run_side() {
  local side="$1" round="$2" row="$3" act="$4" log="$tmp/$1.log"
  local common=(--rows "$row" --act "$act" --reps "$reps" --at-reps "$at_reps")
  if [ "$side" = crate ]; then
    RAYON_NUM_THREADS="$threads" "$crate_bin" "${common[@]}" > "$log" 2>&1 || {
      cat "$log" >&2; die "the crate's benchmark failed ($row $act)"; }
  else
    OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" \
      "$torch_py" "$here/bench_torch.py" "${common[@]}" > "$log" 2>&1 || {
      cat "$log" >&2; die "the PyTorch benchmark failed ($row $act)"; }
  fi
  local line rss
  line="$(grep -P '^ROW\t' "$log" | head -1 | cut -f2-)"
  rss="$(grep -P '^PEAK_RSS_MB\t' "$log" | cut -f2)"
  [ -n "$line" ] || { cat "$log" >&2; die "no ROW line from the $side benchmark"; }
  printf '%s\t%s\t%s\t%s\n' "$round" "$side" "$line" "${rss:-nan}" >> "$results"
  grep -v -P '^(ROW|PEAK_RSS_MB)\t' "$log" | grep -E 'B=' | sed "s/^/  [round $round] /" >&2 || true
}

IFS=, read -r -a row_list <<< "$rows"
IFS=, read -r -a act_list <<< "$acts"
echo "bench_pair: $(nproc) cores, $threads threads, $rounds rounds, $(date -u '+%Y-%m-%d %H:%M UTC')" >&2
for ((r = 1; r <= rounds; r++)); do
  for row in "${row_list[@]}"; do
    for act in "${act_list[@]}"; do
      if [ -z "$torch_py" ]; then
        run_side crate "$r" "$row" "$act"
      elif ((r % 2)); then
        run_side crate "$r" "$row" "$act"; run_side torch "$r" "$row" "$act"
      else
        run_side torch "$r" "$row" "$act"; run_side crate "$r" "$row" "$act"
      fi
    done
  done
done

summary "$results"
