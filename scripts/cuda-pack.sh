#!/usr/bin/env bash
# Packs binaries built with `--features cuda` into one folder to carry to a GPU machine that has
# no Rust: the binaries, scripts/cuda-env.sh, the headers dfdx compiles against at run time, a
# manifest, and any extra files named with --with.
#
# Why the headers: dfdx 0.13 compiles a few kernels at run time (NVRTC) and gives NVRTC two
# include folders by the absolute paths they had at build time: its build script's OUT_DIR (its
# own .cuh files) and the toolkit's include/ (cuda_fp16.h). The manifest records both, and
# cuda-env.sh recreates them on the GPU machine.
#
# Usage: bash scripts/cuda-pack.sh [--target-dir DIR] [--with FILE]... [--cuda-headers] DEST BINARY...
#   --target-dir DIR  cargo's target folder of the build (default: $CARGO_TARGET_DIR, else target)
#   --with FILE       also carry FILE (or a folder) into DEST/; may be repeated
#   --cuda-headers    also carry the build toolkit's include/ folder, for a GPU machine with no
#                     CUDA headers of the same major version (otherwise cuda-env.sh links that
#                     path to the GPU machine's own CUDA include/)
#   DEST              the folder to make (replaced if it is an earlier pack; keep it git-ignored,
#                     e.g. .gpu)
#   BINARY            executables from the build; a test binary (NAME-<hash>) is also reachable
#                     as DEST/bin/NAME
# Example:
#   CARGO_TARGET_DIR=target/cuda cargo test --release --features cuda --test gpu --no-run
#   bash scripts/cuda-pack.sh --target-dir target/cuda .gpu \
#       target/cuda/release/examples/bench_gpu target/cuda/release/deps/gpu-*
# On the GPU machine: source .gpu/cuda-env.sh && gpu && bench_gpu
set -euo pipefail

die() {
  echo "cuda-pack.sh: error: $*" >&2
  exit 1
}
note() { echo "cuda-pack.sh: $*" >&2; }
usage() {
  if [ "${1:-2}" = 0 ]; then
    sed -n '/^# Usage:/,/^# On the GPU machine/p' "$0" | sed 's/^# \{0,1\}//'
  else
    sed -n '/^# Usage:/,/^# On the GPU machine/p' "$0" | sed 's/^# \{0,1\}//' >&2
  fi
  exit "${1:-2}"
}

target=${CARGO_TARGET_DIR:-target}
extras=()
cuda_headers=false
while [ $# -gt 0 ]; do
  case $1 in
    --target-dir) [ $# -ge 2 ] || die "--target-dir needs a folder"; target=$2; shift 2 ;;
    --target-dir=*) target=${1#*=}; shift ;;
    --with) [ $# -ge 2 ] || die "--with needs a file"; extras+=("$2"); shift 2 ;;
    --with=*) extras+=("${1#*=}"); shift ;;
    --cuda-headers) cuda_headers=true; shift ;;
    -h | --help) usage 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "cuda-pack.sh: error: give DEST and at least one BINARY" >&2; usage; }
dest=$1
shift

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ -f "$here/cuda-env.sh" ] || die "$here/cuda-env.sh is missing"
[ -d "$target" ] || die "no target folder '$target' (build first; pass --target-dir if CARGO_TARGET_DIR was set)"

# Check everything before touching DEST.
bins=()
for b in "$@"; do
  if [ -f "$b" ] && [ -x "$b" ]; then
    bins+=("$b")
  elif [ -f "$b" ]; then
    note "skipping $b (not an executable: cargo's .d files match deps/NAME-* too)"
  else
    die "binary '$b' not found (build it first)"
  fi
done
[ ${#bins[@]} -gt 0 ] || die "none of the given files is an executable"
for f in "${extras[@]}"; do
  [ -e "$f" ] || die "--with $f: not found"
  case $(basename "$f") in
    bin | include | manifest | cuda-env.sh) die "--with $f: the name $(basename "$f") is the pack's own" ;;
  esac
done

# dfdx's CUDA builds in the target folder: each build script run left OUT_DIR's path in
# `root-output` and its `cargo:rustc-env=` lines (CUDA_INCLUDE_DIR, CUDA_COMPUTE_CAP) in `output`.
builds=()
for dir in "$target"/*/build/dfdx-* "$target"/*/*/build/dfdx-*; do
  [ -f "$dir/output" ] && [ -f "$dir/root-output" ] || continue
  grep -q '^cargo:rustc-env=CUDA_COMPUTE_CAP=sm_' "$dir/output" || continue # not cuda, or ci-check
  builds+=("$dir")
done
[ ${#builds[@]} -gt 0 ] ||
  die "no dfdx build with the cuda feature under '$target' (pass --target-dir if CARGO_TARGET_DIR was set)"

if [ -e "$dest" ]; then
  [ -f "$dest/manifest" ] || die "'$dest' exists and is not an earlier pack; choose another DEST"
  rm -rf "$dest"
fi
mkdir -p "$dest/bin" "$dest/include"
cp "$here/cuda-env.sh" "$dest/"

manifest=$dest/manifest
{
  echo "# robust-paf CUDA pack (scripts/cuda-pack.sh), $(date -u +%Y-%m-%dT%H:%M:%SZ), built on $(uname -n)"
  echo "# kind<TAB>fields: arch ARCH | needs SONAME | cuh N OUT_DIR | cuda INCLUDE_DIR [PACKED]"
} >"$manifest"

n=0
includes=()
for dir in "${builds[@]}"; do
  out=$(cat "$dir/root-output")
  ls "$out"/*.cuh >/dev/null 2>&1 || die "$out has no .cuh files (an incomplete build?)"
  mkdir -p "$dest/include/$n"
  cp "$out"/*.cuh "$dest/include/$n/"
  printf 'cuh\t%s\t%s\n' "$n" "$out" >>"$manifest"
  n=$((n + 1))
  arch=$(sed -n 's/^cargo:rustc-env=CUDA_COMPUTE_CAP=//p' "$dir/output" | tail -n 1)
  grep -qxF "arch"$'\t'"$arch" "$manifest" || printf 'arch\t%s\n' "$arch" >>"$manifest"
  inc=$(sed -n 's/^cargo:rustc-env=CUDA_INCLUDE_DIR=//p' "$dir/output" | tail -n 1)
  case " ${includes[*]-} " in *" $inc "*) ;; *) includes+=("$inc") ;; esac
done

k=0
for inc in "${includes[@]}"; do
  if $cuda_headers; then
    [ -f "$inc/cuda_fp16.h" ] || die "--cuda-headers: $inc/cuda_fp16.h not found (the toolkit of the build is gone?)"
    cp -RL "$inc" "$dest/include/cuda-$k"
    printf 'cuda\t%s\tcuda-%s\n' "$inc" "$k" >>"$manifest"
    k=$((k + 1))
  else
    printf 'cuda\t%s\n' "$inc" >>"$manifest"
  fi
done

# The CUDA libraries the binaries load (for cuda-env.sh to find, and to name when missing).
if command -v readelf >/dev/null; then
  for b in "${bins[@]}"; do
    { readelf -d "$b" 2>/dev/null || true; } | sed -n 's/.*(NEEDED).*\[\(lib\(cuda\|nvrtc\|cublas\|cublasLt\|curand\|cudart\|cudnn\)\.so[^]]*\)\]/\1/p'
  done | sort -u | while read -r so; do printf 'needs\t%s\n' "$so"; done >>"$manifest"
else
  note "no readelf: the manifest does not list the libraries; cuda-env.sh will look for any version"
fi

declare -A short=()
for b in "${bins[@]}"; do
  name=$(basename "$b")
  [ ! -e "$dest/bin/$name" ] || die "two binaries named $name"
  cp "$b" "$dest/bin/"
  # cargo names test binaries NAME-<16 hex digits>; give the newest of each NAME its plain name.
  if [[ $name =~ ^(.+)-[0-9a-f]{16}$ ]]; then
    plain=${BASH_REMATCH[1]}
    if [ -n "${short[$plain]-}" ]; then
      note "two builds of $plain given: ${short[$plain]} and $b; $plain runs the newer"
      [ "$b" -nt "${short[$plain]}" ] || continue
    fi
    short[$plain]=$b
    if [ -e "$dest/bin/$plain" ] && [ ! -L "$dest/bin/$plain" ]; then
      note "not linking $plain to $name: a binary of that name is packed too"
      continue
    fi
    ln -sfn "$name" "$dest/bin/$plain"
  fi
done

for f in "${extras[@]}"; do
  cp -R "$f" "$dest/"
done

note "packed $(du -sh "$dest" | cut -f1) into $dest: ${#bins[@]} binaries, $n header folders$(
  [ ${#extras[@]} -eq 0 ] || echo ", ${#extras[@]} extra files")"
note "on the GPU machine: source $dest/cuda-env.sh, then run the binaries by name"
