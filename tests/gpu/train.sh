#!/usr/bin/env bash
# Trains the embedded shapes model further on a GPU, for a time budget: what the 2-core machine
# cannot give it is images seen (README, "The shapes model"). Renders a new single-object shapes
# world, times a few steps, then fine-tunes `native/models/shapes`'s UNet (token grounding, EMA,
# cosine schedule) for as many steps as fit, and scores the result and the committed model side by
# side with `bench --truth` (mask IoU and prompt following). OUT_DIR gets four flat files (what the
# device tool brings back from a lent machine):
#
#   unet.safetensors   the trained UNet in fp16: copy it over
#                      native/models/shapes/unet/diffusion_pytorch_model.safetensors when better
#   truth.json         {"trained": …, "committed": …, "steps", "batch", "seconds_per_step", "device"}
#   loss.csv, loss.png the run's loss log and curve
#
#   bash tests/gpu/train.sh [OUT_DIR]            # default: $OUT/train, else ./train-out
#
# MASKFORGE_TRAIN_SECONDS (default 240) is the training time; the data, the timing run and the
# scoring come on top (about a minute on a GPU). MASKFORGE_TRAIN_DEVICE (default auto),
# MASKFORGE_TRAIN_BATCH (default 128), MASKFORGE_TRAIN_IMAGES (default 100000). The objective
# (v-prediction, zero terminal SNR) comes with the committed model's configs. The binary:
# MASKFORGE_CHECK_PREBUILT's `maskforge` (see check.sh), else a release build with the features
# in MASKFORGE_TRAIN_FEATURES (e.g. cuda). The data and the run folder stay in $TMPDIR, so the
# same command run again on the same machine resumes a run cut short. MASKFORGE_TRAIN_QUICK=1 is
# a smoke run of a few steps on 64 images, for a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${1:-${OUT:+$OUT/train}}
out=$(realpath -m "${out:-train-out}")
quick=${MASKFORGE_TRAIN_QUICK:-0}
device=${MASKFORGE_TRAIN_DEVICE:-auto}
seconds=${MASKFORGE_TRAIN_SECONDS:-240}
batch=${MASKFORGE_TRAIN_BATCH:-128}
images=${MASKFORGE_TRAIN_IMAGES:-100000}
truth=32
if [ "$quick" = 1 ]; then batch=2 images=64 truth=2; fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/maskforge-xdg}
mkdir -p "$XDG_RUNTIME_DIR" "$out" && chmod 700 "$XDG_RUNTIME_DIR"
log() { echo "[gpu-train $(date +%T)] $*" >&2; }

if [ -n "${MASKFORGE_CHECK_PREBUILT:-}" ]; then
  bin=$(mktemp -d)/maskforge
  if [ -f "$MASKFORGE_CHECK_PREBUILT/maskforge.xz" ]; then
    xz -dc "$MASKFORGE_CHECK_PREBUILT/maskforge.xz" >"$bin"
  else
    cp "$MASKFORGE_CHECK_PREBUILT/maskforge" "$bin"
  fi
  chmod +x "$bin"
else
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
  cargo build --release -p maskforge --features "${MASKFORGE_TRAIN_FEATURES:-}"
  bin=$CARGO_TARGET_DIR/release/maskforge
fi

shipped=native/models/shapes
# Outside OUT_DIR (too large to come back from a lent machine), at fixed paths so that a rerun
# reuses the data and resumes the run (a run folder checks that its arguments are the same).
data=${TMPDIR:-/tmp}/maskforge-train-shapes-$images
run=${TMPDIR:-/tmp}/maskforge-train-run-$batch
log "rendering $images scenes"
"$bin" shapes --num-images "$images" --size 64 --max-objects 1 --out "$data" --seed 300000 --quiet

# Stage 5's recipe (README, The shapes model), at a larger batch and rate.
train=(train unet --model "$shipped" --data "$data" --batch "$batch" --lr 5e-4 --lr-schedule cosine
  --warmup 100 --ema --ema-decay 0.999 --proportion-empty-prompts 0.1
  --caption-field /objects/0/caption,/objects/0/caption_plain --grounding-loss 1
  --checkpoint-every 500 --seed 4 --device "$device" --quiet)
# Seconds per step from a short run, past its first steps (kernel compilation and autotune,
# which CubeCL's environment keeps for the real run); a rerun keeps the first run's count.
if [ -f "$run.plan" ]; then
  read -r per_step steps <"$run.plan"
else
  probe=$(mktemp -d)/probe
  log "timing 12 steps at batch $batch on $device"
  "$bin" "${train[@]}" --out "$probe" --steps 12
  per_step=$(awk -F, 'NR == 5 {t = $5} NR == 13 {print ($5 - t) / 8}' "$probe/logs/loss.csv")
  steps=$(awk -v s="$seconds" -v p="$per_step" 'BEGIN {n = int(s / p); print (n < 200 ? 200 : n)}')
  [ "$quick" = 1 ] && steps=4
  echo "$per_step $steps" >"$run.plan"
fi
log "$per_step s per step: $steps steps"

# A run cut short keeps its checkpoints; the same command resumes it.
status=0
timeout $((seconds * 2 + 120)) "$bin" "${train[@]}" --out "$run" --steps "$steps" || status=$?
[ "$status" = 0 ] || { log "training stopped ($status); rerun to resume $run"; exit 1; }

# The result as the embedded model's folder, its UNet in fp16 as committed.
model=$(mktemp -d)/model
mkdir -p "$model/unet"
for f in model_index.json mosaic.json scheduler text_encoder tokenizer vae unet/config.json; do
  cp -r "$run/$f" "$model/$f"
done
"$bin" convert "$run/unet/diffusion_pytorch_model.safetensors" \
  "$model/unet/diffusion_pytorch_model.safetensors" --half
cp "$model/unet/diffusion_pytorch_model.safetensors" "$out/unet.safetensors"
cp "$run/logs/loss.csv" "$run/logs/loss.png" "$out/"

log "scoring the result and the committed model ($truth samples each)"
score() { "$bin" bench "$@" --truth "$truth" --skip unet,vae,text --device "$device" --json | tail -n 1; }
trained=$(score --model "$model")
committed=$(score --model "$shipped")
python3 - "$out/truth.json" "$trained" "$committed" "$steps" "$batch" "$per_step" "$device" <<'PY'
import json, sys
path, trained, committed, steps, batch, per_step, device = sys.argv[1:]
report = {"trained": json.loads(trained).get("truth"), "committed": json.loads(committed).get("truth"),
          "steps": int(steps), "batch": int(batch), "seconds_per_step": float(per_step),
          "device": device}
open(path, "w").write(json.dumps(report, indent=1) + "\n")
for name in ("trained", "committed"):
    t = report[name] or {}
    print(f"{name}: mean_iou {t.get('mean_iou')}, colour following "
          f"{(t.get('color_following') or {}).get('accuracy')}, shape following "
          f"{(t.get('shape_following') or {}).get('accuracy')}", file=sys.stderr)
PY
