#!/usr/bin/env bash
# Recipe for the bundled default model (src/cadenza/models/default).
# Data: ../shared/data (Nottingham folk ABC, POP909, ASAP score MIDI) and the
# music21 Bach chorales, four styles. About 1 hour on 2 CPU cores; a GPU is used when present.
# Resumable: run it again with RESUME=1 after an interruption.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/default}
STEPS=${STEPS:-900}
cadenza train \
  --data "$DATA/nottingham=folk" \
  --data "music21:bach=chorale" \
  --data "$DATA/pop909=pop" \
  --data "$DATA/asap=classical" \
  --out "$OUT" --steps "$STEPS" --batch-size 16 --ctx 512 \
  --d-model 256 --layers 4 --heads 8 --d-ff 704 --lr 1e-3 --eval-every 150 \
  --name cadenza-default --license "mixed: Nottingham GPL-3.0, POP909 MIT, ASAP CC BY-NC-SA 4.0 (non-commercial), music21 Bach corpus public domain; this model is for non-commercial use" \
  ${RESUME:+--resume}
python recipes/bundle.py "$OUT/model" src/cadenza/models/default --default-style pop
