#!/usr/bin/env bash
# Before/after check for refactors: runs one fixed set of `maskforge` commands (txt2img,
# generate in several settings, sharded generate + collect, merge) with two builds and
# compares every output byte for byte.
#
#   tests/before_after/run.sh OLD_MASKFORGE NEW_MASKFORGE
#
# Build OLD from the base commit (e.g. in a `git worktree`) and NEW from the change.
# Exit status 0 when every output file is identical.
set -euo pipefail
old=$1 new=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
categories=$root/tests/fixtures/categories.json
model=$root/tests/fixtures/tiny-sd15

outputs() {
  local bin=$1 out=$2
  mkdir -p "$out"
  "$bin" txt2img --model "$model" --prompt "a photo of a cat" --height 64 --width 64 --steps 3 \
    --seed 7 --device cpu --out "$out/txt2img.png" 2>/dev/null
  local common=(--categories "$categories" --num-images 3 --regions 1,2,4 --region-size 64x64
    --overlap 16x16 --steps 3 --seed 11 --device cpu --quiet)
  "$bin" generate "${common[@]}" --out "$out/generate" 2>/dev/null
  "$bin" generate "${common[@]}" --out "$out/generate-jpg" --image-format jpg --refine none \
    --component-policy all --min-area-frac 0 --max-area-frac 1 2>/dev/null
  "$bin" generate "${common[@]}" --model "$model" --out "$out/generate-model" \
    --threshold 0.3 --attention-resolutions 16,8 2>/dev/null
  for s in 0 1; do
    "$bin" generate "${common[@]}" --out "$out/sharded" --shard $s/2 2>/dev/null
  done
  "$bin" collect "$out/sharded" 2>/dev/null
  "$bin" merge --base "$out/generate/annotations.json" --add "$out/generate-jpg/annotations.json" \
    --out "$out/merged.json" >/dev/null
}

outputs "$old" "$work/old"
outputs "$new" "$work/new"
if diff -r "$work/old" "$work/new"; then
  echo "before/after: $(find "$work/old" -type f | wc -l) files identical"
else
  echo "before/after: outputs differ" >&2
  exit 1
fi
