#!/usr/bin/env bash
# One-command GPU check: builds the CLI with the GPU backends this machine has (`cuda` with an
# NVIDIA driver, `vulkan` with a Vulkan loader, `metal` on macOS), runs the wgpu parity tests on
# the GPU, times SD 1.5 at 512² (batch 2, f32 and f16, each backend) and SDXL at 1024² (f16, the
# first of cuda, vulkan, wgpu) with `maskforge bench`, and PyTorch on CUDA side by side when it
# is installed. Writes one JSON file, rewritten after every step, so a run cut short keeps
# what it measured.
#
#   bash tests/gpu/check.sh [OUT.json]          # default: $OUT/gpu-check.json, else ./gpu-check.json
#
# MASKFORGE_CHECK_QUICK=1 runs a smoke version (the tiny fixture model at 64², one parity test)
# to try the script on a machine without a GPU (lavapipe); MASKFORGE_CHECK_PROFILE picks the cargo
# profile (default release); MASKFORGE_CHECK_BUDGET=SECONDS skips the steps that no longer fit
# and MASKFORGE_CHECK_STEP_LIMIT=SECONDS caps each step;
# MASKFORGE_CHECK_ONLY=bench|parity runs one half.
#
# MASKFORGE_CHECK_PREBUILT=DIR runs binaries built elsewhere by `tests/gpu/prebuild.sh DIR` (for
# a GPU machine without cargo or a network; plain or .xz): DIR/maskforge (the GPU features),
# DIR/maskforge-wgsl (a default build, timed as backend `wgsl`: with `vulkan` built, `wgpu`
# compiles to SPIR-V) and DIR/parity_wgpu (the test binary; it reads the fixtures of the
# checkout it was built in, at the same path).
#
# Autotune results and compiled kernels persist in ~/.cache/cubecl (CubeCL's environment, the
# CLI's default `persistence` feature; see ./cubecl.toml): a step its limit cut short keeps what
# it tuned, and a rerun starts from there.
set -euo pipefail
cd "$(dirname "$0")/../.."

out_json=${1:-${OUT:-.}/gpu-check.json}
profile=${MASKFORGE_CHECK_PROFILE:-release}
quick=${MASKFORGE_CHECK_QUICK:-0}
budget=${MASKFORGE_CHECK_BUDGET:-100000}
only=${MASKFORGE_CHECK_ONLY:-all}
prebuilt=${MASKFORGE_CHECK_PREBUILT:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/maskforge-xdg}
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
parts=$(mktemp -d)
# Writes the report from the steps run so far.
summarise() {
  python3 - "$parts" "$out_json" "$quick" <<'PY'
import json, pathlib, re, sys
parts, out, quick = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3] == "1"
report = {"gpu": (parts / "gpu.txt").read_text().strip(), "quick": quick, "steps": {}}
for status in sorted(parts.glob("*.status")):
    name = status.stem
    entry = json.loads(status.read_text())
    try:
        entry["result"] = json.loads((parts / f"{name}.json").read_text())
    except (OSError, ValueError):
        entry["result"] = None
    if entry["status"] != 0:
        err = re.sub(r"\x1b\[[0-9;]*m", "", (parts / f"{name}.err").read_text())
        entry["error"] = err.splitlines()[-8:]
    if name == "parity":
        entry["result"] = [l for l in (parts / "parity.out").read_text().splitlines()
                           if l.startswith("test ") and not l.endswith("seconds")]
    report["steps"][name] = entry
bench = report["steps"]
for name, step in bench.items():
    arch, _, rest = name.partition("_")
    if arch == "dispatches" and isinstance(step.get("result"), dict):
        report.setdefault("dispatches_per_unet_call", {})[rest] = step["result"].get(
            "dispatches_per_unet_call")
    if arch == "torch" and isinstance(step.get("result"), dict) and step["result"].get("unet_ms"):
        report.setdefault("unet_it_per_s", {})[name] = 1e3 / step["result"]["unet_ms"]
        report.setdefault("peak_device_mb", {})[name] = step["result"].get("peak_device_mb")
    if arch not in ("smoke", "sd15", "sdxl") or not isinstance(step.get("result"), dict):
        continue
    ours, dtype = step["result"], rest.rpartition("_")[2]
    theirs = bench.get(f"torch_{arch}_{dtype}", {}).get("result")
    first = (ours.get("first_call_ms") or {}).get("unet")
    if first:
        report.setdefault("unet_first_call_s", {})[name] = first / 1e3
    if ours.get("unet_ms"):
        report.setdefault("unet_it_per_s", {})[name] = 1e3 / ours["unet_ms"]
        report.setdefault("peak_device_mb", {})[name] = ours.get("peak_device_mb")
        if theirs and theirs.get("unet_ms"):
            report.setdefault("unet_ms_over_torch", {})[name] = ours["unet_ms"] / theirs["unet_ms"]
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(report, indent=1) + "\n")
PY
}
log() { echo "[gpu-check $(date +%T)] $*" >&2; }
# Runs a step with a time limit; its stdout's last line (JSON) is kept as $parts/<name>.json,
# and its status and seconds as $parts/<name>.status.
step() {
  local name=$1 limit=$2; shift 2
  local left=$((budget - SECONDS - 15)) cap=${MASKFORGE_CHECK_STEP_LIMIT:-$limit}
  [ "$cap" -lt "$limit" ] && limit=$cap
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 20 ]; then log "$name: skipped, out of time"; return; fi
  log "$name: $*"
  local start=$SECONDS status=0
  timeout "$limit" "$@" >"$parts/$name.out" 2>"$parts/$name.err" || status=$?
  echo "{\"status\": $status, \"seconds\": $((SECONDS - start))}" >"$parts/$name.status"
  tail -n 1 "$parts/$name.out" >"$parts/$name.json" || true
  [ "$status" = 0 ] || log "$name failed ($status): $(tail -n 3 "$parts/$name.err" | tr '\n' ' ')"
  summarise
}

log "device"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi"; } >"$parts/gpu.txt"

# The GPU backends to build besides wgpu, fastest first. cudarc reads the CUDA version from nvcc,
# or from CUDARC_CUDA_VERSION (the driver's, from nvidia-smi) where there is no toolkit.
# MASKFORGE_CHECK_BACKENDS (e.g. "wgpu") overrides the detection.
backends=() features=()
if [ -n "${MASKFORGE_CHECK_BACKENDS:-}" ]; then
  read -ra backends <<<"${MASKFORGE_CHECK_BACKENDS//,/ }"
  for b in "${backends[@]}"; do [ "$b" = wgpu ] || features+=("$b"); done
elif nvidia-smi >/dev/null 2>&1; then
  backends+=(cuda) features+=(cuda)
  if ! command -v nvcc >/dev/null && [ -z "${CUDARC_CUDA_VERSION:-}" ]; then
    v=$(nvidia-smi | grep -o 'CUDA Version: [0-9]*\.[0-9]*' | grep -o '[0-9]*\.[0-9]*' || true)
    [ -n "$v" ] && export CUDARC_CUDA_VERSION=$(printf '%d0%d0' "${v%.*}" "${v#*.}")
  fi
fi
if [ -n "${MASKFORGE_CHECK_BACKENDS:-}" ]; then
  :
elif [ "$(uname)" = Darwin ]; then
  backends+=(metal) features+=(metal)
# A hardware Vulkan driver: NVIDIA's, or a DRM render node for Mesa's (not lavapipe alone, whose
# SPIR-V pipelines crash, see README).
elif { compgen -G "/usr/share/vulkan/icd.d/nvidia_icd*.json" || compgen -G "/dev/dri/renderD*" \
    || compgen -G "/etc/vulkan/icd.d/nvidia_icd*.json" \
    || compgen -G "/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd*.json"; } >/dev/null; then
  backends+=(vulkan) features+=(vulkan)
fi
[ -n "${MASKFORGE_CHECK_BACKENDS:-}" ] || [[ " ${backends[*]} " == *" wgpu "* ]] || backends+=(wgpu)
# One feature set for the build and the tests, so both share one compiled burn.
feature_list=$(IFS=,; echo "${features[*]/#/maskforge/}")
log "backends: ${backends[*]}"

dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
if [ -n "$prebuilt" ]; then
  unpacked=$(mktemp -d)
  for f in "$prebuilt"/*; do
    case $f in
      *.xz) xz -dc "$f" >"$unpacked/$(basename "$f" .xz)" ;;
      *) cp "$f" "$unpacked/" ;;
    esac
  done
  chmod +x "$unpacked"/*
  prebuilt=$unpacked
  bin=$prebuilt/maskforge
  log "prebuilt: $(ls "$prebuilt" | tr '\n' ' ')"
else
  step build 900 cargo build --profile "$profile" --workspace --bin maskforge --features "$feature_list"
  bin=$CARGO_TARGET_DIR/$dir/maskforge
fi
# The binary that times `backend`: a default build's for `wgsl` (prebuilt only).
bin_of() { if [ "$1" = wgsl ]; then echo "$prebuilt/maskforge-wgsl"; else echo "$bin"; fi; }
device_of() { if [ "$1" = wgsl ]; then echo wgpu; else echo "$1"; fi; }

# The parity tests run on wgpu; with `vulkan` built, on its SPIR-V compiler.
if [ "$quick" = 1 ]; then
  tests=(--test parity_wgpu) filter=wgpu_txt2img
  model=(--model tests/fixtures/tiny-sd15) size=64 xl=()
else
  tests=(--test parity_wgpu --test seggen_parity) filter=wgpu
  model=(--arch sd15) size=512 xl=(--arch sdxl --height 1024 --width 1024)
fi
if [ "$only" != bench ]; then
  if [ -n "$prebuilt" ]; then
    step parity 900 "$prebuilt/parity_wgpu" "$filter"
  else
    step parity 900 cargo test --profile "$profile" --workspace --features "$feature_list" \
      "${tests[@]}" -- "$filter"
  fi
fi
[ "$only" = parity ] && { summarise; exit 0; }

torch=0
python3 -c "import torch, diffusers; assert torch.cuda.is_available()" 2>/dev/null && torch=1
[ "$torch" = 1 ] || log "no PyTorch with CUDA: PyTorch timings left out"
# Each backend first on the embedded model (64², no files needed): whether it runs at all, and
# what compiling its kernels costs (`first_call_ms`).
if [ "$quick" = 0 ]; then
  for backend in "${backends[@]}"; do
    step "smoke_${backend}" 180 "$(bin_of "$backend")" bench --batch 2 --iters 3 \
      --device "$(device_of "$backend")" --dtype f16 --json
  done
fi
# f16 first, each backend and PyTorch side by side, then f32, so a short budget keeps pairs.
for dtype in f16 f32; do
  for backend in "${backends[@]}"; do
    step "sd15_${backend}_$dtype" 300 "$(bin_of "$backend")" bench "${model[@]}" --height $size \
      --width $size --batch 2 --iters 10 --device "$(device_of "$backend")" --dtype $dtype --json
  done
  if [ "$torch" = 1 ]; then
    step "torch_sd15_$dtype" 300 python3 tests/fixtures/bench_torch.py --arch sd15 --height 512 \
      --width 512 --batch 2 --iters 10 --device cuda --dtype $dtype
  fi
done
# Kernels per UNet call: counted in a run of its own, since the execution log slows the timed one.
for backend in "${backends[@]}"; do
  [ "$backend" = cuda ] && continue
  step "dispatches_${backend}" 200 "$(bin_of "$backend")" bench "${model[@]}" --height $size \
    --width $size --batch 2 --iters 1 --device "$(device_of "$backend")" --dtype f16 \
    --skip vae,text --count-dispatches --json
done
if [ ${#xl[@]} -gt 0 ]; then
  step "sdxl_${backends[0]}_f16" 400 "$(bin_of "${backends[0]}")" bench "${xl[@]}" --batch 2 \
    --iters 5 --device "$(device_of "${backends[0]}")" --dtype f16 --json
  if [ "$torch" = 1 ]; then
    step torch_sdxl_f16 400 python3 tests/fixtures/bench_torch.py --arch sdxl --height 1024 \
      --width 1024 --batch 2 --iters 5 --device cuda --dtype f16
  fi
fi

failed=$(grep -L '"status": 0' "$parts"/*.status | wc -l)
rm -rf "$parts" ${unpacked:-}
[ "$failed" = 0 ] || { log "$failed step(s) failed; see $out_json"; exit 1; }
