"""Evaluation: objective measures of generated music (MusPy-compatible, numpy only)."""

from cadenza.eval.metrics import (
    all_metrics,
    empty_beat_rate,
    loop_rate,
    pitch_class_entropy,
    pitch_range,
    polyphony,
    scale_consistency,
)

__all__ = ["all_metrics", "empty_beat_rate", "loop_rate", "pitch_class_entropy", "pitch_range", "polyphony",
           "scale_consistency"]
