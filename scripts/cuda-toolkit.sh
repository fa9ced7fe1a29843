#!/usr/bin/env bash
# A CUDA 13.0 toolkit for *building* the `cuda` feature on a machine with no GPU and no CUDA
# install, put together from NVIDIA's PyPI wheels. The binaries it builds run on a GPU machine
# (carry them there with scripts/cuda-pack.sh; set them up there with scripts/cuda-env.sh).
#
# Usage, from the repository root (the cudarc sources must be on disk: `cargo fetch` first):
#   source <(bash scripts/cuda-toolkit.sh)       # assembles the toolkit once, prints the exports
#   cargo build --release --features cuda ...
#
# Environment (all optional):
#   CUDA_COMPUTE_CAP       compute capability of the GPU the binaries will run on, without the dot:
#                          90 (H100, H200; the default), 80 (A100), 86 (RTX 30xx, A10), 89 (L4,
#                          RTX 40xx), ... The value must be one that this nvcc can target.
#   ROBUST_PAF_CUDA_CACHE  where the toolkit is assembled and kept
#                          (default: ${XDG_CACHE_HOME:-~/.cache}/robust-paf/cuda-13.0)
#   PYTHON                 the Python whose pip downloads the wheels (default: python3)
#   CARGO_HOME             where cargo keeps crate sources (default: ~/.cargo)
#   CC                     the C compiler for the libcuda stub (default: cc)
#
# What it makes under the cache folder:
#   cuda/                  the toolkit (CUDA_ROOT): nvcc, the headers, NVRTC, cuBLAS, cuBLASLt
#                          and the runtime, laid out as cudarc's and dfdx's build scripts and
#                          nvcc expect it (cuRAND is not needed: dfdx 0.13 does not enable
#                          cudarc's `curand` feature)
#   cuda/lib64/stubs/libcuda.so
#                          a stand-in for the driver library, for the linker only: one empty
#                          function per driver function that cudarc 0.9 declares. The real
#                          libcuda.so.1 comes with the GPU machine's driver.
#   shim/nvidia-smi        answers the one question dfdx's build script asks nvidia-smi (the
#                          compute capability) with $CUDA_COMPUTE_CAP; it refuses anything else.
#                          It comes first on PATH in the shell that sources the exports.
#   wheels/                the downloaded wheels (kept, so a rebuild does not download again)
#
# The binaries need, on the GPU machine, a driver for CUDA 13.0 or newer and CUDA 13 libraries
# (libnvrtc.so.13, libcublas.so.13, libcublasLt.so.13).
set -euo pipefail

die() {
  echo "cuda-toolkit.sh: error: $*" >&2
  exit 1
}
note() { echo "cuda-toolkit.sh: $*" >&2; }

# The wheels of one CUDA release (13.0); every CUDA 13 wheel unpacks into nvidia/cu13/.
WHEELS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.1.0.3
)
# The libraries cudarc 0.9 links by plain name (-lnvrtc -lcublas -lcublasLt), and the runtime,
# as the versioned files they are.
LINK_NAMES=(libnvrtc.so.13 libcublas.so.13 libcublasLt.so.13 libcudart.so.13)

cap=${CUDA_COMPUTE_CAP:-90}
[[ $cap =~ ^[0-9]{2,3}$ ]] ||
  die "CUDA_COMPUTE_CAP='$cap' is not a compute capability without its dot (e.g. 90 for 9.0, 86 for 8.6)"

[ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ] ||
  die "only x86_64 Linux is supported (this is $(uname -s) $(uname -m))"

cache=${ROBUST_PAF_CUDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/robust-paf/cuda-13.0}
cuda=$cache/cuda
stamp="${WHEELS[*]}"

if [ ! -f "$cuda/.complete" ] || [ "$(cat "$cuda/.complete")" != "$stamp" ]; then
  python=${PYTHON:-python3}
  command -v "$python" >/dev/null || die "'$python' not found (set PYTHON to a Python 3 with pip)"
  "$python" -m pip --version >/dev/null 2>&1 ||
    die "'$python -m pip' does not work; install pip (e.g. apt-get install python3-pip) or set PYTHON"
  cc=${CC:-cc}
  command -v "$cc" >/dev/null || die "no C compiler '$cc' (needed for the libcuda stub; set CC)"

  # The driver functions cudarc declares, from its sources (the version in Cargo.lock: 0.9.x).
  sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.9.*/src/driver/sys.rs 2>/dev/null |
    sort -V | tail -n 1 || true)
  [ -n "$sys" ] ||
    die "the cudarc 0.9 sources are not under ${CARGO_HOME:-$HOME/.cargo}/registry/src; run 'cargo fetch' in the repository first"

  mkdir -p "$cache/wheels" || die "cannot create $cache (set ROBUST_PAF_CUDA_CACHE to a writable folder)"
  note "downloading ${#WHEELS[@]} CUDA 13.0 wheels from PyPI into $cache/wheels (once)"
  "$python" -m pip download --quiet --no-deps --only-binary=:all: \
    --implementation cp --python-version 3.12 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --dest "$cache/wheels" "${WHEELS[@]}" >&2 ||
    die "pip could not download the wheels (no network, or no PyPI access?)"

  # Assemble in a scratch folder and move it into place only when complete.
  work=$cache/.assembling.$$
  rm -rf "$work"
  mkdir -p "$work/unpacked"
  trap 'rm -rf "$work"' EXIT
  for pkg in "${WHEELS[@]}"; do
    name=${pkg%%==*}
    version=${pkg#*==}
    whl=$(ls "$cache/wheels/${name//-/_}-$version-"*.whl 2>/dev/null | head -n 1 || true)
    [ -n "$whl" ] || die "pip reported success but no wheel for $pkg is in $cache/wheels"
    # unzip with the files' modes kept (nvcc and its helpers must stay executable)
    "$python" - "$whl" "$work/unpacked" <<'PY' || die "could not unpack $whl"
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        path = z.extract(info, sys.argv[2])
        mode = (info.external_attr >> 16) & 0o777
        if mode and not info.is_dir():
            os.chmod(path, mode)
PY
  done
  [ -d "$work/unpacked/nvidia/cu13" ] || die "the wheels did not unpack into nvidia/cu13/ as expected"
  mv "$work/unpacked/nvidia/cu13" "$work/cuda"
  tk=$work/cuda
  [ -x "$tk/bin/nvcc" ] || die "nvcc is missing from the unpacked wheels"
  [ -f "$tk/include/cuda.h" ] || die "include/cuda.h is missing from the unpacked wheels"

  # nvcc.profile looks for headers and libraries under targets/x86_64-linux/.
  mkdir -p "$tk/targets/x86_64-linux" "$tk/lib64/stubs"
  ln -sfn ../../include "$tk/targets/x86_64-linux/include"
  ln -sfn ../../lib64 "$tk/targets/x86_64-linux/lib"
  for f in "$tk"/lib/*.so*; do
    ln -sf "../lib/$(basename "$f")" "$tk/lib64/"
  done
  for lib in "${LINK_NAMES[@]}"; do
    [ -e "$tk/lib/$lib" ] || die "$lib is missing from the unpacked wheels"
    ln -sf "$lib" "$tk/lib64/${lib%%.so*}.so"
  done

  # The link-time stand-in for libcuda (soname libcuda.so.1, as the driver's).
  grep -o 'pub fn cu[A-Za-z0-9_]*' "$sys" | awk '{ print "void " $3 "(void) {}" }' | sort -u \
    >"$work/libcuda_stub.c"
  [ -s "$work/libcuda_stub.c" ] || die "found no driver functions in $sys"
  "$cc" -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$tk/lib64/stubs/libcuda.so" "$work/libcuda_stub.c" ||
    die "could not compile the libcuda stub with $cc"

  # nvidia-smi for dfdx's build script, which runs `nvidia-smi --query-gpu=compute_cap --format=csv`
  # and requires the answer to be an architecture nvcc can target.
  mkdir -p "$work/shim"
  cat >"$work/shim/nvidia-smi" <<'SH'
#!/bin/sh
# Build-time stand-in for nvidia-smi (scripts/cuda-toolkit.sh): reports $CUDA_COMPUTE_CAP as the
# compute capability, which is all dfdx's build script asks; there is no GPU on this machine.
case "$*" in
  *--query-gpu=compute_cap*)
    cap=${CUDA_COMPUTE_CAP:-90}
    echo compute_cap
    echo "${cap%?}.${cap#"${cap%?}"}"
    ;;
  *)
    echo "nvidia-smi: this is the build shim of robust-paf's scripts/cuda-toolkit.sh (no GPU here)" >&2
    exit 1
    ;;
esac
SH
  chmod +x "$work/shim/nvidia-smi"

  echo "$stamp" >"$tk/.complete"
  rm -rf "$cuda" "$cache/shim"
  mv "$work/shim" "$cache/shim"
  mv "$tk" "$cuda"
  rm -rf "$work"
  trap - EXIT
  note "CUDA 13.0 toolkit ready in $cuda"
fi

# dfdx's build script fails if nvcc cannot target the GPU's architecture: say so now.
codes=$("$cuda/bin/nvcc" --list-gpu-code 2>/dev/null | tr '\n' ' ' || true)
[ -n "$codes" ] || die "$cuda/bin/nvcc does not run (a broken cache? remove $cache and rerun)"
case " $codes " in
  *" sm_$cap "*) ;;
  *) die "this nvcc cannot target sm_$cap (CUDA_COMPUTE_CAP=$cap); it targets: $codes" ;;
esac
note "building for compute capability ${cap%?}.${cap#"${cap%?}"} (sm_$cap); set CUDA_COMPUTE_CAP for another GPU"

# cudarc and dfdx take the first of CUDA_PATH, CUDA_ROOT, ... that has include/cuda.h: set both.
printf 'export CUDA_ROOT=%q\n' "$cuda"
printf 'export CUDA_PATH=%q\n' "$cuda"
printf 'export CUDA_COMPUTE_CAP=%q\n' "$cap"
printf 'export PATH=%q:"$PATH"\n' "$cache/shim:$cuda/bin"
