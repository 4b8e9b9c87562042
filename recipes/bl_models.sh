#!/usr/bin/env bash
# Recipe for the four polyphonic-benchmark models (roll-frames family; guide/benchmarks.md 1b).
# Data: ../shared/data/polyphonic-bl2012/<corpus>.json, train split only (the valid split is the
# benchmark). One small model per corpus (d 192, 4 layers), no transposition: the corpora are all
# in C major / C minor, and so is their valid split. Resumable: RESUME=1 recipes/bl_models.sh
# --pack fills rows with several pieces (jsb_quarter's 67k training tokens overfit fast, so not there).
# Usage: recipes/bl_models.sh [corpus ...]   (default: all four, one after the other)
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs}
MINUTES=${MAX_MINUTES:-12}
corpora=("$@")
[ ${#corpora[@]} -eq 0 ] && corpora=(jsb_quarter nottingham musedata pianomidi)
for c in "${corpora[@]}"; do
  case "$c" in
    jsb_quarter) args=(--ctx 512 --batch-size 16 --steps 240 --dropout 0.3 --eval-every 40) ;;
    nottingham)  args=(--ctx 1024 --batch-size 8 --steps 600 --dropout 0.1 --eval-every 100 --pack) ;;
    musedata)    args=(--ctx 1024 --batch-size 8 --steps 600 --dropout 0.1 --eval-every 100 --pack) ;;
    pianomidi)   args=(--ctx 1024 --batch-size 8 --steps 300 --dropout 0.2 --eval-every 100 --pack) ;;
    *) echo "unknown corpus $c" >&2; exit 2 ;;
  esac
  cadenza train --tokenizer frames --data "bl:$DATA/polyphonic-bl2012/$c.json=$c" \
    --out "$OUT/bl-$c" "${args[@]}" --transpose 0 \
    --d-model 192 --layers 4 --heads 6 --d-ff 512 --lr 2e-3 --precision "${PRECISION:-bf16}" --max-minutes "$MINUTES" \
    --name "bl-$c" --license "BL2012 polyphonic benchmark ($c): public-domain or freely distributed music" \
    ${RESUME:+--resume}
done
