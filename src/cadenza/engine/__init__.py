"""The one generation engine."""

from cadenza.engine.generate import GenerationResult, StopConfig, decode_one, generate, prefill, stream
from cadenza.engine.sampling import SamplingConfig, sample

__all__ = ["GenerationResult", "SamplingConfig", "StopConfig", "decode_one", "generate", "prefill", "sample", "stream"]
