"""Ctrl-C and SIGTERM during training: finish the step, save a checkpoint, then stop.

Checkpoints come every ``save_every`` steps (100 by default), so a run stopped by a signal lost up to
that many steps, and one stopped before its first checkpoint had nothing for ``--resume``. Inside
``StopSignals`` the first SIGINT or SIGTERM only sets a flag that the loop reads after each step; a
second one stops at once (checkpoints are written atomically, so that loses nothing already saved).
"""

from __future__ import annotations

import signal
import threading


class StopSignals:
    """Context manager: ``requested`` turns true at the first SIGINT/SIGTERM (main thread only)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # the second one: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.getsignal(s) for s in self.SIGNALS}
            for s in self.SIGNALS:
                signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    def stop(self) -> None:
        """After the checkpoint: leave as the signal would have (SIGINT: KeyboardInterrupt, exit 130;
        SIGTERM: the default action, exit 143)."""
        signum, self.signum = self.signum, None
        self.__exit__()
        if signum == signal.SIGTERM:
            signal.raise_signal(signal.SIGTERM)
        raise KeyboardInterrupt
