#!/usr/bin/env bash
# One-command GPU check: builds the CLI, runs the wgpu parity tests on the machine's GPU, times
# SD 1.5 at 512² (batch 2, f32 and f16) and SDXL at 1024² (f16) with `maskforge bench`, and
# PyTorch on CUDA side by side when it is installed. Writes one JSON file.
#
#   bash tests/gpu/check.sh [OUT.json]          # default: $OUT/gpu-check.json, else ./gpu-check.json
#
# MASKFORGE_CHECK_QUICK=1 runs a smoke version (the tiny fixture model at 64², one parity test)
# to try the script on a machine without a GPU (lavapipe); MASKFORGE_CHECK_PROFILE picks the cargo
# profile (default release).
set -euo pipefail
cd "$(dirname "$0")/../.."

out_json=${1:-${OUT:-.}/gpu-check.json}
profile=${MASKFORGE_CHECK_PROFILE:-release}
quick=${MASKFORGE_CHECK_QUICK:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/maskforge-xdg}
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
parts=$(mktemp -d)
log() { echo "[gpu-check $(date +%T)] $*" >&2; }
# Runs a step with a time limit; its stdout's last line (JSON) is kept as $parts/<name>.json,
# and its status and seconds as $parts/<name>.status.
step() {
  local name=$1 limit=$2; shift 2
  log "$name: $*"
  local start=$SECONDS status=0
  timeout "$limit" "$@" >"$parts/$name.out" 2>"$parts/$name.err" || status=$?
  echo "{\"status\": $status, \"seconds\": $((SECONDS - start))}" >"$parts/$name.status"
  tail -n 1 "$parts/$name.out" >"$parts/$name.json" || true
  [ "$status" = 0 ] || log "$name failed ($status): $(tail -n 3 "$parts/$name.err" | tr '\n' ' ')"
}

log "device"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi"; } >"$parts/gpu.txt"

dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
step build 900 cargo build --profile "$profile" --workspace --bin maskforge
bin=$CARGO_TARGET_DIR/$dir/maskforge

if [ "$quick" = 1 ]; then
  step parity 600 cargo test --profile "$profile" --workspace --test parity_wgpu -- wgpu_txt2img
  model=(--model tests/fixtures/tiny-sd15) size=64 xl=()
else
  step parity 900 cargo test --profile "$profile" --workspace --test parity_wgpu --test seggen_parity \
    -- wgpu
  model=(--arch sd15) size=512 xl=(--arch sdxl --height 1024 --width 1024)
fi
for dtype in f32 f16; do
  step "sd15_$dtype" 300 "$bin" bench "${model[@]}" --height $size --width $size --batch 2 --iters 10 \
    --device wgpu --dtype $dtype --count-dispatches --json
done
if [ ${#xl[@]} -gt 0 ]; then
  step sdxl_f16 400 "$bin" bench "${xl[@]}" --batch 2 --iters 5 --device wgpu --dtype f16 --json
fi
if python3 -c "import torch, diffusers; assert torch.cuda.is_available()" 2>/dev/null; then
  for dtype in f32 f16; do
    step "torch_sd15_$dtype" 300 python3 tests/fixtures/bench_torch.py --arch sd15 --height 512 \
      --width 512 --batch 2 --iters 10 --device cuda --dtype $dtype
  done
  step torch_sdxl_f16 400 python3 tests/fixtures/bench_torch.py --arch sdxl --height 1024 \
    --width 1024 --batch 2 --iters 5 --device cuda --dtype f16
else
  log "no PyTorch with CUDA: PyTorch timings left out"
fi

python3 - "$parts" "$out_json" "$quick" <<'PY'
import json, pathlib, sys
parts, out, quick = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3] == "1"
report = {"gpu": (parts / "gpu.txt").read_text().strip(), "quick": quick, "steps": {}}
for status in sorted(parts.glob("*.status")):
    name = status.stem
    entry = json.loads(status.read_text())
    try:
        entry["result"] = json.loads((parts / f"{name}.json").read_text())
    except (OSError, ValueError):
        entry["result"] = None
    if name == "parity":
        entry["result"] = [l for l in (parts / "parity.out").read_text().splitlines()
                           if l.startswith("test ") and not l.endswith("seconds")]
    report["steps"][name] = entry
bench = report["steps"]
for arch in ("sd15_f32", "sd15_f16", "sdxl_f16"):
    ours, theirs = bench.get(arch, {}).get("result"), bench.get(f"torch_{arch}", {}).get("result")
    if ours and ours.get("unet_ms"):
        report.setdefault("unet_it_per_s", {})[arch] = 1e3 / ours["unet_ms"]
        if theirs and theirs.get("unet_ms"):
            report.setdefault("unet_ms_over_torch", {})[arch] = ours["unet_ms"] / theirs["unet_ms"]
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(report, indent=1) + "\n")
print(out)
PY
failed=$(grep -L '"status": 0' "$parts"/*.status | wc -l)
rm -rf "$parts"
[ "$failed" = 0 ] || { log "$failed step(s) failed; see $out_json"; exit 1; }
