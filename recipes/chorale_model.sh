#!/usr/bin/env bash
# Recipe for the chorale model (grid family, Music Transformer's JSB serialization).
# Data: the JSB chorales' train split only (../shared/data/jsb-chorales), so the valid
# split's likelihood (bench/chorales.py) is a clean figure; transposition +-5 semitones.
# Rows are packed with several chorale windows (--pack); bf16 forward pass; the model folder keeps
# the final weights unless validation got more than 1% worse than its best.
# Resumable: RESUME=1 recipes/chorale_model.sh
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/chorale}
STEPS=${STEPS:-600}
cadenza train --tokenizer grid \
  --data "jsb:$DATA/jsb-chorales/jsb16th_train_valid.json=chorale" \
  --out "$OUT" --steps "$STEPS" --batch-size 8 --ctx 1024 --dropout 0.1 --pack \
  --d-model 256 --layers 6 --heads 8 --d-ff 704 --lr 1e-3 --precision "${PRECISION:-bf16}" --eval-every 100 --max-minutes "${MAX_MINUTES:-80}" \
  --name cadenza-chorale --license "JSB chorales: public-domain music (Boulanger-Lewandowski 2012 split)" \
  ${RESUME:+--resume}
