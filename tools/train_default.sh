#!/usr/bin/env bash
# `make model`: train the bundled default model on the developers' AI4Mars file in stages, each
# warm-started from the previous one's best weights ("init"), resuming whatever was interrupted:
#   1. models/default-stage1.json -> runs/default-stage1: from scratch, AdamW 1e-3 with
#      reduce-on-plateau (the seed's recipe plus augmentation), 9 epochs;
#   2. models/default-stage2.json -> runs/default-stage2: lr 5e-4 annealed by a cosine schedule
#      over 8 epochs (validation mIoU swung by +-0.1 between epochs at a constant lr);
#   3. models/default-stage3.json -> runs/default-stage3: weighted CE + Dice (an overlap loss,
#      closer to IoU, weighted towards the rare classes), lr 2e-4 cosine, 4 epochs;
#   4. models/default.json -> runs/default: whole 128x128 frames (`frames`: the tile pairs
#      joined, batch 16), lr 2e-4 cosine, the weights' moving average (`ema` 0.999), 6 epochs.
# Then models/default.npz = the last stage's model, evaluated on the held-out 10% with and
# without TTA.
# A committed models/default-checkpoint.npz (the last stage, while unfinished) seeds a fresh
# checkout's runs/default, so training continues across machines without the early stages.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/marsseg}

run_stage() { # config dir [seed-checkpoint]
  local cfg=$1 dir=$2 seed=${3:-}
  if [ -f "$dir/model.npz" ]; then echo "$dir: finished"; return; fi
  mkdir -p "$dir"
  if [ ! -f "$dir/checkpoint.npz" ] && [ -n "$seed" ] && [ -f "$seed" ]; then cp "$seed" "$dir/checkpoint.npz"; fi
  if [ -f "$dir/checkpoint.npz" ]; then "$bin" train --resume "$dir"
  else "$bin" train --config "$cfg" --out "$dir"; fi
}

if [ ! -f runs/default/model.npz ] && [ ! -f runs/default/checkpoint.npz ] && [ ! -f models/default-checkpoint.npz ]; then
  run_stage models/default-stage1.json runs/default-stage1
  run_stage models/default-stage2.json runs/default-stage2
  run_stage models/default-stage3.json runs/default-stage3
fi
run_stage models/default.json runs/default models/default-checkpoint.npz
cp runs/default/model.npz models/default.npz.tmp && mv models/default.npz.tmp models/default.npz
"$bin" eval --model models/default.npz --split-of models/default.json
"$bin" eval --model models/default.npz --split-of models/default.json --tta
