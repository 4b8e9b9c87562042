"""How many CPU threads the engine decodes with.

Decoding runs one token at a time through small matrices (the bundled models: d_model 256-512), where a
second thread saves little and a machine that is busy with anything else punishes it: on 2 cores with
one other busy process, a 16-bar generation took 36.8 s with torch's default of two threads and 9.7 s
with one (issue 18; ``python bench/generate_speed.py --only threads`` measures both, idle and busy).
So the default is a quarter of the cores this process may use, 1 to 4; ``--threads`` or
``CADENZA_THREADS`` say otherwise. Training keeps its own ``--threads`` (large batches do use cores).
"""

from __future__ import annotations

import os

from cadenza.errors import CadenzaError


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def decode_threads(cores: int | None = None) -> int:
    """The default: a quarter of the usable cores, at least 1 and at most 4."""
    return max(1, min(4, (cores or usable_cores()) // 4))


def set_decode_threads(threads: int | None = None) -> int:
    """Set torch's thread count for decoding: ``threads``, else ``$CADENZA_THREADS``, else the default.
    Returns the count set."""
    import torch

    if threads is None:
        env = os.environ.get("CADENZA_THREADS", "").strip()
        if env:
            if not env.isdigit() or int(env) < 1:
                raise CadenzaError(f"CADENZA_THREADS must be a whole number of threads, 1 or more (got {env!r})")
            threads = int(env)
    n = threads or decode_threads()
    torch.set_num_threads(n)
    return n
