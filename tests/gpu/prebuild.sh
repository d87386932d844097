#!/usr/bin/env bash
# Builds what `tests/gpu/check.sh` needs on a GPU machine that has no cargo and no network
# (MASKFORGE_CHECK_PREBUILT): the CLI with `vulkan` and `cuda`, the wgpu parity tests of the
# same build, and a default build (WGSL), each stripped and xz-compressed into DIR.
#
#   bash tests/gpu/prebuild.sh DIR [CUDA_VERSION]     # CUDA_VERSION as cudarc spells it: 13000
#
# The `cuda` build needs no CUDA toolkit here, but cubecl-cuda links LLVM, which its build
# script downloads from GitHub. Where that cannot be reached, this build skips the download
# (patched build scripts of `tracel-llvm-bundler` and `cubecl-llvm`, via `--config patch`),
# makes CUDA C++ through NVRTC the compiler (cubecl-cuda's `cpp` back end, which needs no LLVM),
# and links stubs that abort for the LLVM functions that back end never calls. The GPU machine
# then needs NVRTC (`libnvrtc.so`, from the CUDA toolkit or the `nvidia-cuda-nvrtc` wheel).
# The binaries are built in the dev profile (dependencies optimised, see Cargo.toml). The GPU
# CLI and its test binary each build burn once (their features differ); the default CLI is the
# test build's.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "${1:?usage: prebuild.sh DIR [CUDA_VERSION]}")
cuda_version=${2:-13000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
mkdir -p "$out"
# A fixed place for the patched crates, so a second run reuses the first one's build.
work=$CARGO_TARGET_DIR/prebuild
mkdir -p "$work"
# The patches rewrite Cargo.lock's sources; it is put back as it was.
cp Cargo.lock "$work/Cargo.lock"
trap 'cp "$work/Cargo.lock" Cargo.lock' EXIT

registry=$(dirname "$(dirname "$(cargo metadata --format-version 1 --locked | python3 -c '
import json, sys
print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cubecl-cuda"))')")")
# Each crate at its Cargo.lock version, copied and patched once: no LLVM download or link, and
# NVRTC as the compiler.
patch=()
for crate in cubecl-llvm tracel-llvm-bundler cubecl-cuda; do
  version=$(grep -A1 "^name = \"$crate\"$" Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
  dir=$work/$crate-$version
  if [ ! -d "$dir" ]; then
    cp -r "$registry/$crate-$version" "$dir.tmp"
    case $crate in
      tracel-llvm-bundler) sed -i '0,/^fn main() {/s//&\n    if true { return; }/' "$dir.tmp/build.rs" ;;
      cubecl-llvm) sed -i '0,/^fn main() -> Result<(), Box<dyn std::error::Error>> {/s//&\n    if true { return Ok(()); }/' \
        "$dir.tmp/build.rs" ;;
      cubecl-cuda) sed -i '0,/if cfg!(feature = "cpp") {/s//if true {/' "$dir.tmp/src/compiler.rs" ;;
    esac
    grep -rq 'if true' "$dir.tmp/build.rs" "$dir.tmp/src/compiler.rs" 2>/dev/null \
      || { echo "prebuild: the patch of $crate $version no longer applies" >&2; exit 1; }
    mv "$dir.tmp" "$dir"
  fi
  patch+=(--config "patch.crates-io.$crate.path=\"$dir\"")
done

export CUDARC_CUDA_VERSION=$cuda_version
gpu=(-p maskforge --features maskforge/vulkan,maskforge/cuda)
tests=(-p maskforge-tests --features vulkan,maskforge/cuda)
# First link with the LLVM symbols left undefined, to list them; then link stubs for them.
# (Removing the binary makes cargo link it again: a change of link arguments alone may not.)
rm -f "$CARGO_TARGET_DIR/debug/maskforge"
cargo rustc "${patch[@]}" "${gpu[@]}" --bin maskforge -- \
  -C link-arg=-Wl,--unresolved-symbols=ignore-all
nm -D --undefined-only "$CARGO_TARGET_DIR/debug/maskforge" | awk '{print $2}' \
  | grep -E '^(LLVM|cubecl_)' | sort -u \
  | awk 'BEGIN { print "#include <stdlib.h>" } { print "void " $1 "(void) { abort(); }" }' \
  >"$work/llvm_stubs.c"
cc -c -fPIC "$work/llvm_stubs.c" -o "$work/llvm_stubs.o"
rm -f "$CARGO_TARGET_DIR/debug/maskforge"
cargo rustc "${patch[@]}" "${gpu[@]}" --bin maskforge -- -C link-arg="$work/llvm_stubs.o"
cp "$CARGO_TARGET_DIR/debug/maskforge" "$work/maskforge"
if nm -D --undefined-only "$work/maskforge" | grep -q ' LLVM'; then
  echo "prebuild: LLVM symbols still undefined in the cuda build" >&2; exit 1
fi
parity=$(cargo rustc "${patch[@]}" "${tests[@]}" --test parity_wgpu --message-format json \
  -- -C link-arg="$work/llvm_stubs.o" \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "parity_wgpu" and m.get("executable"):
        print(m["executable"])')
cp "$parity" "$work/parity_wgpu"
cp "$work/Cargo.lock" Cargo.lock
# The default build, WGSL on every adapter, as the test build makes it (whose compiled burn
# a developer's machine already has).
cargo test --workspace --no-run --locked
cp "$CARGO_TARGET_DIR/debug/maskforge" "$work/maskforge-wgsl"
for bin in maskforge parity_wgpu maskforge-wgsl; do
  strip "$work/$bin"
  xz -T0 -6 -c "$work/$bin" >"$out/$bin.xz"
done
ls -l "$out"
