"""The one tokenizer protocol every model family speaks.

A tokenizer turns a ``symusic.Score`` into token ids and back, and owns a
*grammar*: a small state machine that says which token may follow which. The
engine turns grammar states into logit masks, so every generated sequence
decodes. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import symusic


@runtime_checkable
class GrammarState(Protocol):
    """Where a sequence is in the grammar. Mutable; one per generated sequence."""

    def mask_key(self) -> tuple:
        """Everything the allowed-token mask depends on (used as a cache key)."""

    def advance(self, token_id: int) -> None:
        """Consume one token."""

    def complete(self) -> bool:
        """True when the sequence may end here and still decode with nothing dropped."""

    def copy(self) -> "GrammarState": ...


@runtime_checkable
class Tokenizer(Protocol):
    scheme: str
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int

    def encode(self, score: symusic.Score, style: str | None = None) -> list[int]: ...

    def decode(self, ids: list[int]) -> symusic.Score: ...

    def start_state(self, **constraints: Any) -> GrammarState: ...

    def allowed(self, state: GrammarState) -> np.ndarray:
        """Boolean mask of shape (vocab_size,): tokens that may follow ``state``."""

    def to_config(self) -> dict: ...

    def header(self, style: str | None = None) -> list[int]:
        """The tokens every sequence starts with (BOS, and a style token where the scheme has one)."""

    @property
    def pitch_ids(self) -> dict[int, int]:
        """Transposable MIDI pitch -> token id, for transposition augmentation."""

    def window_starts(self, tokens: np.ndarray) -> np.ndarray:
        """Indices in a token array where a training window may start."""
