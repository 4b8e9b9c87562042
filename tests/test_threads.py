"""Decoding threads and SIGTERM in the CLI (issue 18: a 16-bar piece took 36.8 s with torch's two
threads beside a busy process, 9.7 s with one; SIGTERM left half-written files)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from cadenza.engine.threads import decode_threads, set_decode_threads
from cadenza.errors import CadenzaError


def test_the_default_is_a_quarter_of_the_cores_from_one_to_four():
    assert [decode_threads(c) for c in (1, 2, 4, 8, 16, 64)] == [1, 1, 1, 2, 4, 4]


def test_threads_come_from_the_flag_then_the_environment(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("CADENZA_THREADS", "3")
        assert set_decode_threads() == 3 and torch.get_num_threads() == 3
        assert set_decode_threads(2) == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("CADENZA_THREADS", "many")
        with pytest.raises(CadenzaError, match="CADENZA_THREADS"):
            set_decode_threads()
    finally:
        torch.set_num_threads(before)


def test_generate_takes_threads_and_leaves_on_sigterm(tmp_path, tiny_model_dir):
    code = ("import sys, torch; from cadenza.cli import main; rc = main(sys.argv[1:]); "
            "print('threads', torch.get_num_threads()); sys.exit(rc)")
    out = tmp_path / "a.mid"
    done = subprocess.run([sys.executable, "-c", code, "generate", "--model", str(tiny_model_dir), "--bars", "1",
                           "--threads", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "threads 1" in done.stdout and out.exists()
    proc = subprocess.Popen([sys.executable, "-m", "cadenza", "generate", "--model", str(tiny_model_dir), "--bars",
                             "500", "--out", str(tmp_path / "long.mid")], stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err
    assert not list(tmp_path.glob(".*"))  # nothing half-written left behind


def test_a_sigterm_swallowed_in_a_weakref_callback_still_stops_the_command():
    """Python swallows an exception raised in a weakref callback (torch.compile runs many): a SIGTERM that
    landed there let `generate --bars 500` run on and exit 0. The handler raises again every 0.2 s until
    the process has left, and the swallowed exception is not printed."""
    code = ("import os, signal, sys, time, weakref\nimport cadenza.cli as cli\n"
            "signal.signal(signal.SIGTERM, cli._terminate)\nsys.unraisablehook = cli._unraisable(sys.unraisablehook)\n"
            "class A: pass\n"
            "def cb(ref):\n    os.kill(os.getpid(), signal.SIGTERM)\n    time.sleep(0.01)\n"
            "a = A(); r = weakref.ref(a, cb); del a\nprint('swallowed', flush=True)\n"
            "t0 = time.time()\nwhile time.time() - t0 < 10:\n    pass\nprint('not stopped')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 128 + signal.SIGTERM and done.stdout.strip() == "swallowed", (done.stdout, done.stderr)
    assert done.stderr.strip() == ""
