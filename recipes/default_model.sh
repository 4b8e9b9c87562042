#!/usr/bin/env bash
# Recipe for the bundled small model (src/cadenza/models/small; the default model until the arrange
# model, recipes/arrange_model.sh, beat it on the foundation benchmark, 2026-11-26).
# Data: ../shared/data (Nottingham folk ABC, POP909, ASAP score MIDI) and the
# music21 Bach chorales, four styles. About 50 minutes on 2 CPU cores; a GPU is used when present.
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
python recipes/bundle.py "$OUT/model" src/cadenza/models/small --default-style pop --recipe-note \
  "Run \`recipes/default_model.sh\` from the repository root with \`../shared/data\` beside it. On 2 CPU cores it took about 7 minutes to tokenize the data and 40 minutes (900 steps, 2,830 tokens/s) to train. Default style when none is asked for: pop. The music is mostly for piano (program 0): other instruments are rarely chosen by this model."
