#!/usr/bin/env bash
# Recipe for the multi-track "arrange" model family (issue 7): the remi tokenizer with every control
# (key and instruments in the header, a chord per bar, given tracks first in a bar, bars after a gap
# first). Data: ../shared/data (POP909 with its chord annotations, Nottingham folk with its ABC
# chords as accompaniment, ASAP score MIDI) and the music21 corpus (Bach chorales as SATB voices,
# Palestrina, Haydn/Mozart/Beethoven string quartets).
# POP909's melody and bridge tracks are put on band instruments and 60% of its songs get rule-made
# drums (cadenza/train/drums.py: no corpus here has drum tracks); 30% of training windows move their
# instruments onto other GM programs (cadenza/train/corpora.py), so any instrument can be asked for.
# Same-instrument unisons are dropped from the pieces (corpora.drop_unisons) and each window's header
# lists only the instruments that play in it.
# The bundled model (src/cadenza/models/arrange) was trained in two runs on 2 CPU cores:
#   STEPS=1900 bash recipes/arrange_model.sh            # 25 min tokenizing, 65 min training (unisons kept)
#   RESUME=1 STEPS=4600 bash recipes/arrange_model.sh   # tokenizes again (unisons dropped), 2,700 more steps, 94 min
# (That was data pipeline 2, commit cf0c9d0; since pipeline 3, 70% of POP909 songs also get their
# piano's bass line as a bass part, corpora.with_bass, for the next training of this family.)
# The learning rate of the second run starts where its cosine over 4,600 steps is at step 1,900. A single
# STEPS=4600 run is the same recipe in one go (about 25 + 150 minutes on 2 cores).
# Resumable: run it again with RESUME=1 after an interruption (STEPS may then be changed).
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/arrange}
STEPS=${STEPS:-4600}  # extra arguments (e.g. --max-minutes 100) go to cadenza train
cadenza train \
  --data "$DATA/pop909=pop" \
  --data "$DATA/nottingham=folk" \
  --data "$DATA/asap=classical" \
  --data "music21:bach=chorale" \
  --data "music21:palestrina=renaissance" \
  --data "music21:haydn=quartet" --data "music21:mozart=quartet" --data "music21:beethoven=quartet" \
  --controls key,instruments,chords,infill \
  --out "$OUT" --steps "$STEPS" --batch-size 16 --ctx 512 --pack --precision bf16 \
  --d-model 256 --layers 6 --heads 8 --d-ff 704 --lr 1e-3 --eval-every 200 \
  --name cadenza-arrange --license "mixed: Nottingham GPL-3.0, POP909 MIT, ASAP CC BY-NC-SA 4.0 (non-commercial), music21 corpus public domain; this model is for non-commercial use" \
  ${RESUME:+--resume} "$@"
