"""Tokenizers: one protocol (``base.Tokenizer``), one module per scheme."""

from cadenza.tokenizers.audio import AudioSpec, AudioTokenizer
from cadenza.tokenizers.base import GrammarState, Tokenizer
from cadenza.tokenizers.frames import FrameSpec, FrameTokenizer
from cadenza.tokenizers.grid import GridSpec, GridTokenizer
from cadenza.tokenizers.remi import RemiSpec, RemiTokenizer

SCHEMES = {"remi": RemiTokenizer, "grid": GridTokenizer, "frames": FrameTokenizer, "audio": AudioTokenizer}


def tokenizer_from_config(cfg: dict) -> Tokenizer:
    """Rebuild a tokenizer from the ``tokenizer`` section of a model's config.json."""
    scheme = cfg.get("scheme", "remi")
    if scheme not in SCHEMES:
        from cadenza.errors import ModelError

        raise ModelError(f"unknown tokenizer scheme '{scheme}' (known: {', '.join(SCHEMES)})")
    return SCHEMES[scheme].from_config(cfg)


__all__ = ["AudioSpec", "AudioTokenizer", "FrameSpec", "FrameTokenizer", "GrammarState", "GridSpec", "GridTokenizer", "Tokenizer", "RemiSpec", "RemiTokenizer",
           "tokenizer_from_config"]
