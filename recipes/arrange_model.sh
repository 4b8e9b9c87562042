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
# 70% of POP909 songs also get their piano's bass line as a bass part (corpora.with_bass).
# The bundled model (src/cadenza/models/arrange) was trained in three runs on 2 CPU cores, each
# resuming the last one's checkpoint on data tokenized again by the then current pipeline:
#   STEPS=1900 bash recipes/arrange_model.sh            # 25 min tokenizing, 65 min training (pipeline 1: unisons kept)
#   RESUME=1 STEPS=4600 bash recipes/arrange_model.sh   # 25 + 94 min (pipeline 2: unisons dropped)
#   RESUME=1 STEPS=6500 bash recipes/arrange_model.sh   # 25 + 55 min (pipeline 3: POP909 bass parts)
# Each resumed run's learning rate picks up its cosine over the new STEPS at the step it resumes from.
# A single STEPS=6500 run is the same recipe on the current data in one go (about 25 + 200 minutes).
# Then: python recipes/repeat_rates.py runs/arrange/model  (each style's rate of restated bars)
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
