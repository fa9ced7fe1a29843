#!/usr/bin/env bash
# Sets up a GPU machine to run the binaries that scripts/cuda-pack.sh packed (neither Rust nor a
# CUDA toolkit is needed there: the NVIDIA driver and the CUDA libraries of the build's major
# version are). cuda-pack.sh copies this script into the pack, next to the manifest it reads.
#
# Usage, on the GPU machine (DEST is the pack, e.g. .gpu):
#   source DEST/cuda-env.sh                   # in this shell, then run the binaries by name
#   bash DEST/cuda-env.sh COMMAND [ARGS...]   # or run one command with that environment
#
# What it does:
#   1. The loader path. For each CUDA library the binaries need (DEST/manifest lists them, e.g.
#      libnvrtc.so.13, libcublas.so.13, libcublasLt.so.13, libcuda.so.1), nothing if the loader
#      already finds it; otherwise the first folder that has it goes onto LD_LIBRARY_PATH, looked
#      for in: $ROBUST_PAF_CUDA_LIBS (folders, colon-separated), $CUDA_ROOT, $CUDA_PATH,
#      /usr/local/cuda, the NVIDIA wheels of a Python environment (site-packages/nvidia/*/lib of
#      $PYTHON, default python3; e.g. PyTorch's), and the driver's usual folders. A library found
#      nowhere is an error that names it.
#   2. The run-time headers. dfdx compiles some kernels when first used (NVRTC) with include
#      folders fixed at build time: its build script's OUT_DIR and the toolkit's include/. Both
#      are recreated at those paths: the .cuh files copied from DEST/include, the include folder
#      linked to the copy packed with --cuda-headers, else to this machine's CUDA headers (the
#      same places as above). This needs the right to create those paths.
#   3. DEST/bin goes first on PATH; the GPU, its driver and compute capability are printed, with
#      a warning if they do not fit what the binaries were built for.
#
# The work runs in a subshell under `set -euo pipefail`, so that sourcing this script changes
# only LD_LIBRARY_PATH and PATH of your shell, not its options.

if [ -z "${BASH_VERSION:-}" ]; then
  echo "cuda-env.sh: run it with bash: source DEST/cuda-env.sh (bash), or bash DEST/cuda-env.sh COMMAND" >&2
  return 1 2>/dev/null || exit 1
fi

_rpaf_cuda_env_setup() (
  set -euo pipefail
  dest=$1
  manifest=$dest/manifest
  err() { echo "cuda-env.sh: error: $*" >&2; }
  warn() { echo "cuda-env.sh: warning: $*" >&2; }
  [ -f "$manifest" ] || { err "$manifest not found: this script runs from a folder made by scripts/cuda-pack.sh"; exit 1; }
  field() { awk -F'\t' -v k="$1" '$1 == k { print $2 }' "$manifest"; }

  # --- 1. libraries ---------------------------------------------------------------------------
  cands=()
  if [ -n "${ROBUST_PAF_CUDA_LIBS:-}" ]; then
    IFS=: read -ra extra <<<"$ROBUST_PAF_CUDA_LIBS"
    cands+=("${extra[@]}")
  fi
  for root in "${CUDA_ROOT:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
    [ -n "$root" ] && cands+=("$root/lib64" "$root/lib" "$root/targets/x86_64-linux/lib")
  done
  pydirs=()
  python=${PYTHON:-python3}
  if command -v "$python" >/dev/null 2>&1; then
    # the nvidia namespace package of the pip wheels: nvidia/cu13/{lib,include} for CUDA 13,
    # nvidia/cublas/lib, nvidia/cuda_nvrtc/lib, ... for CUDA 12
    mapfile -t pydirs < <("$python" - 2>/dev/null <<'PY' || true
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
for p in list(nvidia.__path__):
    for d in sorted(glob.glob(os.path.join(p, "*"))):
        if os.path.isdir(d):
            print(d)
PY
    )
  fi
  for d in "${pydirs[@]}"; do cands+=("$d/lib"); done
  cands+=(/usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/wsl/lib)

  ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
  cache=$("$ldconfig" -p 2>/dev/null || true)
  IFS=: read -ra current <<<"${LD_LIBRARY_PATH:-}"
  found_by_loader() { # soname or glob
    local d f
    for d in "${current[@]}"; do
      [ -n "$d" ] || continue
      for f in "$d"/$1; do [ -e "$f" ] && return 0; done
    done
    # ldconfig -p lines look like: "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/.../libcuda.so.1"
    awk '{ print $1 }' <<<"$cache" | grep -q "^${1//\*/.*}\$"
  }
  needs=$(field needs)
  [ -n "$needs" ] || needs=$'libcuda.so.1\nlibnvrtc.so.*\nlibcublas.so.*\nlibcublasLt.so.*'
  add=()
  missing=()
  while read -r so; do
    [ -n "$so" ] || continue
    found_by_loader "$so" && continue
    hit=
    for d in "${cands[@]}"; do
      for f in "$d"/$so; do
        if [ -e "$f" ]; then hit=$d; break 2; fi
      done
    done
    if [ -z "$hit" ]; then
      missing+=("$so")
    else
      case " ${add[*]-} " in *" $hit "*) ;; *) add+=("$hit") ;; esac
    fi
  done <<<"$needs"
  if [ ${#missing[@]} -gt 0 ]; then
    err "not found: ${missing[*]}"
    echo "  looked where the loader looks and in: ${cands[*]}" >&2
    echo "  libcuda.so.1 comes with the NVIDIA driver; the others with a CUDA toolkit or NVIDIA's pip" >&2
    echo "  wheels of the same major version as the build (e.g. PyTorch's): set ROBUST_PAF_CUDA_LIBS" >&2
    echo "  to their folder, or PYTHON to the python of the environment that has them" >&2
    exit 1
  fi

  # --- 2. run-time headers --------------------------------------------------------------------
  local_cuda_include() {
    local d
    for d in "${CUDA_ROOT:-}" "${CUDA_PATH:-}" /usr/local/cuda "${pydirs[@]}"; do
      [ -n "$d" ] && [ -f "$d/include/cuda_fp16.h" ] && { echo "$d/include"; return 0; }
    done
    return 1
  }
  while IFS=$'\t' read -r kind a b; do
    case $kind in
      cuh) # a: number of the packed copy, b: OUT_DIR of the build
        src=$dest/include/$a
        same=true
        for f in "$src"/*.cuh; do cmp -s "$f" "$b/$(basename "$f")" || { same=false; break; }; done
        $same && continue
        if ! mkdir -p "$b" 2>/dev/null || ! cp "$src"/*.cuh "$b/" 2>/dev/null; then
          err "cannot create $b, the folder dfdx's run-time compiler reads its headers from (the path"
          echo "  it had on the build machine): run as a user who may create it, or build in a target" >&2
          echo "  folder whose path can exist on both machines" >&2
          exit 1
        fi
        ;;
      cuda) # a: the toolkit's include/ at build time, b: the packed copy, if any
        [ -f "$a/cuda_fp16.h" ] && continue
        if [ -n "$b" ]; then
          to=$dest/include/$b
        elif ! to=$(local_cuda_include); then
          err "no CUDA headers (cuda_fp16.h) on this machine for the run-time compiler: pack with"
          echo "  --cuda-headers, or set CUDA_ROOT to a CUDA toolkit of the build's major version" >&2
          exit 1
        fi
        if [ -e "$a" ] && [ ! -L "$a" ]; then
          err "$a exists but has no cuda_fp16.h; it cannot stand in for the build's CUDA include folder"
          exit 1
        fi
        if ! mkdir -p "$(dirname "$a")" 2>/dev/null || ! ln -sfn "$to" "$a" 2>/dev/null; then
          err "cannot create $a (the build's CUDA include path): run as a user who may create it"
          exit 1
        fi
        ;;
    esac
  done <"$manifest"

  # --- 3. the GPU -----------------------------------------------------------------------------
  if command -v nvidia-smi >/dev/null 2>&1; then
    gpu=$(nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>/dev/null | head -n 1 || true)
    drv_cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p' | head -n 1 || true)
    echo "cuda-env.sh: GPU ${gpu:-?}; the driver supports CUDA ${drv_cuda:-?}" >&2
    cap=$(awk -F', *' '{ print $3 }' <<<"$gpu" | tr -d .)
    arch=$(field arch | tr '\n' ' ')
    if [ -n "$cap" ] && [ -n "$arch" ] && [[ " $arch " != *" sm_$cap "* ]]; then
      warn "the binaries were built for ${arch% }, this GPU is sm_$cap: kernels built for a newer"
      echo "  architecture cannot load; rebuild with CUDA_COMPUTE_CAP=$cap" >&2
    fi
    built=$(field needs | sed -n 's/^libnvrtc\.so\.\([0-9]*\).*/\1/p' | head -n 1)
    if [ -n "$built" ] && [ -n "$drv_cuda" ] && [ "${drv_cuda%%.*}" -lt "$built" ]; then
      warn "the binaries were built with CUDA $built, this driver supports CUDA $drv_cuda: its"
      echo "  kernels (PTX) need a driver for CUDA $built or newer" >&2
    fi
  else
    warn "nvidia-smi not found: is the NVIDIA driver installed?"
  fi

  (IFS=:; echo "${add[*]-}")
)

_rpaf_dest=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if _rpaf_libs=$(_rpaf_cuda_env_setup "$_rpaf_dest"); then
  if [ -n "$_rpaf_libs" ]; then
    export LD_LIBRARY_PATH="$_rpaf_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  case ":$PATH:" in
    *":$_rpaf_dest/bin:"*) ;;
    *) export PATH="$_rpaf_dest/bin:$PATH" ;;
  esac
  _rpaf_ok=0
else
  _rpaf_ok=1
fi
unset -f _rpaf_cuda_env_setup
unset _rpaf_libs

if (return 0 2>/dev/null); then # sourced
  unset _rpaf_dest
  [ "$_rpaf_ok" = 0 ] || { unset _rpaf_ok; return 1; }
  unset _rpaf_ok
else # executed: run the command
  set -euo pipefail
  [ "$_rpaf_ok" = 0 ] || exit 1
  [ "${1:-}" != -- ] || shift
  if [ $# -eq 0 ]; then
    echo "cuda-env.sh: usage: source $_rpaf_dest/cuda-env.sh, or bash $_rpaf_dest/cuda-env.sh COMMAND [ARGS...]" >&2
    exit 2
  fi
  exec "$@"
fi
