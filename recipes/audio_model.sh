#!/usr/bin/env bash
# Recipe for the bundled audio model (src/cadenza/models/audio; issue 8).
# 1. Render the training audio from the symbolic corpora through the project's SoundFont renderer
#    (FluidSynth + the GM SoundFont): piano (POP909, ASAP scores), strings (JSB chorales as a string
#    quartet), winds (Nottingham tunes on flute/oboe/clarinet over bassoon and horn); 30 s of each piece,
#    16 kHz mono. About 8 hours of audio in 5 minutes on 2 cores.
# 2. Train the codec (3000 steps, about 15 minutes on 2 CPU cores), encode every recording, train the
#    prior (about 45 minutes). Resumable: run again with RESUME=1 after an interruption.
# 3. Bundle the model folder into the package (float16 weights, codec included; <= 25 MB).
set -euo pipefail
DATA=${DATA:-../shared/data}
WAVS=${WAVS:-runs/audio_wavs}
OUT=${OUT:-runs/audio}
PRIOR_STEPS=${PRIOR_STEPS:-1300}
python recipes/audio_data.py --data "$DATA" --out "$WAVS"
cadenza audio train --data "$WAVS" --out "$OUT" --codec-steps 3000 --prior-steps "$PRIOR_STEPS" \
  --batch-size 16 --ctx 512 --d-model 256 --n-layers 6 --threads 2 --precision bf16 --name cadenza-audio \
  --license "mixed: rendered from POP909 (MIT), ASAP (CC BY-NC-SA 4.0, non-commercial), JSB chorales (public domain), Nottingham (GPL-3.0); this model is for non-commercial use" \
  ${RESUME:+--resume}
python recipes/bundle.py "$OUT/model" src/cadenza/models/audio --recipe-note \
  "Run \`recipes/audio_model.sh\` from the repository root with \`../shared/data\` beside it (FluidSynth and the GM SoundFont installed). On 2 CPU cores: 5 minutes of rendering, 15 minutes of codec training, 1 minute of encoding, about 50 minutes of prior training (1,300 steps at 2.3 s with bfloat16 autocast)."
