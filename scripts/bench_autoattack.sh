#!/usr/bin/env bash
# AutoAttack-standard on the quick model, robust-paf against torchattacks on the same cores
# (issue 11, "Attacks").
#
# 1. trains the quick model (`robust-paf train --preset quick-pgd-at`: SmallCnn, PSSiLU, PGD-AT on
#    the embedded Fashion-MNIST subset) into OUT/quick-pgd-at, unless --checkpoint is given;
# 2. times the crate's AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square; 100 iterations,
#    5,000 queries) on the first N test images: `robust-paf eval --autoattack standard --eps EPS
#    --pgd-steps 0`, RAYON_NUM_THREADS=THREADS;
# 3. exports the checkpoint (`robust-paf export`) and the same images, labels and the crate's clean
#    logits (`examples/dump_test_set.rs`);
# 4. runs scripts/torchattacks_autoattack.py: the same SmallCnn in PyTorch (its clean logits must
#    match the crate's within 1e-4), then torchattacks.AutoAttack(version='standard', seed=0)
#    with torch.set_num_threads(THREADS), as torchattacks has it (10 steps for APGD and FAB) and
#    with 100 steps (the crate's and the original AutoAttack's counts);
# and prints two tables: per side the clean and robust accuracy, wall and CPU seconds and the cores
# busy; per attack the points attacked and each side's wall s / CPU s and accuracy after it.
# Without PyTorch + torchattacks it says so and prints the crate's numbers alone.
#
#   scripts/bench_autoattack.sh [--checkpoint CKPT] [--out DIR] [--eps 8/255] [--n 1000]
#       [--batch-size 256] [--threads 2] [--variants default,steps100] [--no-torch]
#
# --no-torch: the crate's side alone (e.g. to time a change of the crate against a PyTorch run of
# earlier). --out: working folder (default out/bench-autoattack; the run, the eval report and logs stay
# there, so `--checkpoint OUT/quick-pgd-at/best.safetensors` reuses the model next time).
# PyTorch: $TORCH_PYTHON, else the venv $ROBUST_PAF_TORCH_VENV (default
# ~/.cache/robust-paf/torch-venv; scripts/bench_pair.sh --install-torch makes one, then
# `pip install torchattacks` in it), else `python3` if it imports torch and torchattacks.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="${ROBUST_PAF_TORCH_VENV:-$HOME/.cache/robust-paf/torch-venv}"

checkpoint="" out="$root/out/bench-autoattack" eps="8/255" n=1000 batch=256 threads=2
variants="default,steps100" no_torch=0
die() { echo "bench_autoattack: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --checkpoint) checkpoint="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    --eps) eps="${2:?}"; shift 2 ;;
    --n) n="${2:?}"; shift 2 ;;
    --batch-size) batch="${2:?}"; shift 2 ;;
    --threads) threads="${2:?}"; shift 2 ;;
    --variants) variants="${2:?}"; shift 2 ;;
    --no-torch) no_torch=1; shift ;;
    -h|--help) sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
for v in "$n" "$batch" "$threads"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "expected a positive number, got '$v'"
done
[ -z "$checkpoint" ] || [ -f "$checkpoint" ] || die "no checkpoint at $checkpoint"
[ -z "$checkpoint" ] || checkpoint="$(cd "$(dirname "$checkpoint")" && pwd)/$(basename "$checkpoint")"

torch_py=""
[ "$no_torch" = 1 ] ||
for py in "${TORCH_PYTHON:-}" "$venv/bin/python" python3; do
  [ -n "$py" ] || continue
  if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import torch, torchattacks, numpy' >/dev/null 2>&1; then
    torch_py="$py"; break
  fi
done
if [ -z "$torch_py" ] && [ "$no_torch" = 0 ]; then
  echo "bench_autoattack: PyTorch with torchattacks and numpy not found (TORCH_PYTHON, $venv," \
    "python3): the crate's numbers alone." >&2
fi

cd "$root"
echo "bench_autoattack: building robust-paf and examples/dump_test_set (release)" >&2
cargo build --release --quiet --bin robust-paf --example dump_test_set
target="${CARGO_TARGET_DIR:-$root/target}/release"
bin="$target/robust-paf"
[ -x "$bin" ] || die "no binary at $bin"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

echo "bench_autoattack: $(nproc) cores, $threads threads, $(date -u '+%Y-%m-%d %H:%M UTC')," \
  "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)" >&2
if [ -z "$checkpoint" ]; then
  run="$out/quick-pgd-at"
  if [ -e "$run" ]; then
    [ -f "$run/config.toml" ] || die "$run exists and is not a run directory; remove it"
    rm -r -- "$run"
  fi
  echo "bench_autoattack: training the quick model (preset quick-pgd-at) into $run" >&2
  t0=$(date +%s%N)
  RAYON_NUM_THREADS="$threads" "$bin" train --preset quick-pgd-at --out "$run" --quiet
  echo "bench_autoattack: trained in $(( ($(date +%s%N) - t0) / 1000000000 )) s" >&2
  checkpoint="$run/best.safetensors"
fi

# busy and steal CPU ticks of the whole machine so far (/proc/stat), to tell how much CPU other
# processes took while a side ran
cpu_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8, $9; f = 1} END {if (!f) print "nan nan"}' \
  /proc/stat 2>/dev/null || echo "nan nan"; }
exec 3>&2
TIMEFORMAT='%R %U %S'
# timed NAME CMD...: runs CMD, its output to OUT/NAME.log and (prefixed) stderr; wall, user and
# system seconds to OUT/NAME.time, the machine's CPU ticks before and after to OUT/NAME.ticks
timed() {
  local name="$1" before rc=0
  shift
  before="$(cpu_ticks)"
  { time { "$@" 2>&1 | tee "$out/$name.log" | awk -v p="  $name: " '{print p $0; fflush()}' >&3
    }; } 2> "$out/$name.time" || rc=$?
  echo "$before $(cpu_ticks)" > "$out/$name.ticks"
  return "$rc"
}

echo "bench_autoattack: the crate's AutoAttack standard, eps $eps, $n images, batch $batch" >&2
timed crate env RAYON_NUM_THREADS="$threads" "$bin" eval --checkpoint "$checkpoint" \
  --autoattack standard --eps "$eps" --pgd-steps 0 --n-examples "$n" --batch-size "$batch" \
  --seed 0 --out "$out/crate-autoattack.json" || die "the crate's evaluation failed ($out/crate.log)"

torch_json=""
if [ -n "$torch_py" ]; then
  echo "bench_autoattack: exporting the model and the test images" >&2
  "$bin" export --checkpoint "$checkpoint" --out "$out/model.safetensors" > /dev/null
  "$target/examples/dump_test_set" --checkpoint "$checkpoint" --out "$out/data" --n "$n" > /dev/null
  echo "bench_autoattack: torchattacks AutoAttack standard ($variants) with $torch_py" >&2
  torch_json="$out/torchattacks-autoattack.json"
  timed torch env OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" "$torch_py" \
    "$here/torchattacks_autoattack.py" --weights "$out/model.safetensors" --data "$out/data" \
    --eps "$eps" --batch-size "$batch" --threads "$threads" --variants "$variants" \
    --json "$torch_json" || die "the torchattacks run failed ($out/torch.log)"
fi

python3 - "$out" "$(getconf CLK_TCK)" "$torch_json" <<'EOF'
import json, math, re, sys
out, tck, torch_json = sys.argv[1], float(sys.argv[2]), sys.argv[3]
NAMES = ["apgd-ce", "apgd-t", "fab-t", "square"]
def usage(name):
    """(wall s, own CPU s, other processes' CPU s) of a timed side, from `time` and /proc/stat."""
    wall, user, sys_ = map(float, open(f"{out}/{name}.time").read().split()[-3:])
    b0, _, b1, _ = map(float, open(f"{out}/{name}.ticks").read().split())
    return wall, user + sys_, (b1 - b0) / tck - (user + sys_)
def others(name):
    wall, _, other = usage(name)
    return "?" if math.isnan(other) else f"{max(other, 0) / wall:.2f}"
pct = lambda v: f"{100 * v:.2f}"
num = lambda v, d=1: "?" if v is None else f"{v:.{d}f}"
crate = json.load(open(f"{out}/crate-autoattack.json"))
acc = dict(crate["autoattack_per_attack"])
timing = {t["attack"]: t for t in crate.get("autoattack_timings", [])}
if not timing:  # a report without timings: the seconds from the log, no CPU time
    for k, s, n in re.findall(r"robust accuracy after (\S+): [\d.]+% \(([\d.]+) s.*?(\d+) points",
                              open(f"{out}/crate.log").read()):
        timing[k] = {"seconds": float(s), "cpu_seconds": None, "points": int(n)}
# one side: (label, clean, robust, {attack: (wall, cpu, points, acc after)}, process usage name)
sides = [("robust-paf, 100 steps", crate["clean_accuracy"], crate["autoattack_accuracy"],
          {k: (timing[k]["seconds"], timing[k]["cpu_seconds"], timing[k]["points"], acc[k])
           for k in NAMES}, "crate")]
t = None
if torch_json:
    t = json.load(open(torch_json))
    label = {"default": "torchattacks (its 10 steps)", "steps100": "torchattacks, 100 steps"}
    for v in t["variants"]:
        sides.append((label[v["variant"]], t["clean_accuracy"], v["robust_accuracy"],
                      {a["attack"]: (a["seconds"], a["cpu_seconds"], a["points"],
                                     a["robust_accuracy"]) for a in v["per_attack"]}, "torch"))
print(f"\nAutoAttack standard, Linf eps {crate['eps_text']} = {crate['eps']:.6f}, "
      f"{crate['n_examples']} test images, {crate['model']}\n")
print("| side | clean % | robust % | wall s | CPU s | cores | others' cores |")
print("|---|---|---|---|---|---|---|")
for lbl, clean, robust, per, proc in sides:
    wall = sum(p[0] for p in per.values())
    cpus = [p[1] for p in per.values()]
    cpu = None if None in cpus else sum(cpus)
    cores = "?" if cpu is None else f"{cpu / wall:.2f}"
    print(f"| {lbl} | {pct(clean)} | {pct(robust)} | **{wall:.1f}** | {num(cpu)} | {cores} "
          f"| {others(proc)} |")
print("\n| attack | points | " + " | ".join(f"{s[0]}: wall s / CPU s → robust %" for s in sides)
      + " |")
print("|---|---|" + "---|" * len(sides))
for k in NAMES:
    pts = sides[0][3][k][2]
    cells = [f"{s[3][k][0]:.1f} / {num(s[3][k][1])} → {pct(s[3][k][3])}" for s in sides]
    print(f"| {k} | {pts} | " + " | ".join(cells) + " |")
w, c, _ = usage("crate")
print(f"\nthe `robust-paf eval` process: {w:.1f} s wall, {c:.1f} s CPU (start-up, loading and "
      "the clean pass included)")
if t:
    w, c, _ = usage("torch")
    print(f"the PyTorch process: {w:.1f} s wall, {c:.1f} s CPU (every variant, import, loading "
          "and the logits check included)")
    print(f"clean logits: max |PyTorch - crate| = {t['logits_max_diff']:.3g}; "
          f"PyTorch {t['torch']}, torchattacks {t['torchattacks']}, {t['threads']} threads")
else:
    print("(no PyTorch + torchattacks: the crate's numbers alone)")
print("Wall s and CPU s: the four attacks (each side's own measurement: the crate's "
      "AutoAttack report, time.process_time in PyTorch; CPU = user + system seconds of every "
      "thread of the process). Cores: CPU s / wall s (THREADS at best). Others' cores: CPU "
      "seconds per wall second every other process on the machine used while that side ran "
      "(/proc/stat; above ~0.1 the times are not clean). Points: the images each attack ran on "
      "(those every earlier attack left robust; they differ between sides when the accuracies "
      "do).")
EOF
