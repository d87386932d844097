#!/usr/bin/env bash
# Builds the npm package `maskforge` into web/pkg/: the wasm32 crate in release mode, then
# wasm-bindgen (ES module for browsers and bundlers, TypeScript types). Offline once the crates
# are fetched. Needs the wasm32-unknown-unknown target and wasm-bindgen-cli of the version in
# Cargo.lock. No wasm-opt pass (not measured yet; Debian's binaryen is too old for this output).
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}') || true
if [ "$have" != "$want" ]; then
  echo "web/build.sh: wasm-bindgen-cli $want is needed (found: ${have:-none});" \
       "run: cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "web/build.sh: run: rustup target add wasm32-unknown-unknown" >&2
  exit 1
fi

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build -p maskforge-web --target wasm32-unknown-unknown --release --locked
rm -rf web/pkg
# The name section (function names for stack traces) is 6 of the 35 MB.
wasm-bindgen --target web --out-dir web/pkg --out-name maskforge --remove-name-section \
  "$target_dir/wasm32-unknown-unknown/release/maskforge.wasm"


version=$(awk -F'"' '/^\[workspace.package\]/ {w=1} w && /^version/ {print $2; exit}' Cargo.toml)
cat > web/pkg/package.json <<JSON
{
  "name": "maskforge",
  "version": "$version",
  "description": "Stable Diffusion and MosaicFusion instance-segmentation datasets in the browser, on WebGPU or the CPU (Rust, burn, wasm)",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": "maskforge.js",
  "module": "maskforge.js",
  "types": "maskforge.d.ts",
  "exports": {
    ".": { "types": "./maskforge.d.ts", "default": "./maskforge.js" },
    "./maskforge_bg.wasm": "./maskforge_bg.wasm"
  },
  "files": ["maskforge.js", "maskforge.d.ts", "maskforge_bg.wasm", "maskforge_bg.wasm.d.ts", "snippets/", "README.md"],
  "sideEffects": false,
  "keywords": ["stable-diffusion", "webgpu", "wasm", "segmentation", "dataset", "mosaicfusion"]
}
JSON
cp web/README.md web/pkg/README.md
ls -l web/pkg
