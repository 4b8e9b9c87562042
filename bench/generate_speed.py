"""The generation engine's speed, long pieces, loops and live timing, in one run.

    python bench/generate_speed.py [--model NAME|DIR] [--tokens 256] [--pieces 20] [--live-seconds 120]
                                   [--only speed,threads,long,loops,live,int8] [--threads 2]

Prints one ``name: value`` line per figure on stdout (progress on stderr). Protocols
(guide/benchmarks.md, section 2):

- ``tokens_per_s_cadenza`` (eager, the default) and ``tokens_per_s_cadenza_compiled``
  (``--compile``, after compiling): batch 1, the bundled default model, ``--tokens`` new tokens after a
  header prompt (no context slide), temperature 1.0, top-p 0.95, no repetition penalty; timed
  from the first new token to the last (prefill excluded), median of 3 runs.
- ``tokens_per_s_hf``: the same weights loaded into Hugging Face ``LlamaForCausalLM`` (the
  architecture is Llama-shaped on purpose; ``hf_max_logit_diff`` checks the two agree), same
  prompt, ``generate(do_sample=True, top_p=0.95, temperature=1.0)`` for the same number of new
  tokens (EOS off); prefill excluded by timing a 1-token call too. ``speedup_vs_hf`` = ratio.
  (Needs ``pip install transformers``; skipped with a note otherwise.)
- ``realtime_factor``: seconds of music per wall second for ``generate(bars=16)``;
  ``first_note_ms``: wall time from the call of ``stream_notes`` to its first note (prefill
  included), median of 5.
- ``per_token_ms`` = 1000 / tokens_per_s_cadenza; ``floor_ms``: the larger of the model's FLOPs
  per token at this machine's measured fp32 matmul rate (2048^3 sgemm) and its bytes per token
  (weights, plus the KV cache at the mean position) at the measured memory read bandwidth (a
  256 MB array); ``per_token_over_floor`` = their ratio.
- ``piece_240s_wall_s``, ``piece_240s_peak_mb``: ``cadenza generate --seconds 240`` in a fresh
  process (peak resident memory of that process, torch included).
- ``loop_rate_plain`` / ``loop_rate_controlled`` / ``loop_rate_real`` (section 3): ``--pieces``
  long pieces (``--bars`` bars, styles in turn) without any repetition control, with cadenza's
  control (the default sampling settings: the bar repetition control at each style's rate), and
  the first ``--bars`` bars of as many real validation pieces (at least 8 bars long) of the same
  styles; ``scale_consistency_*`` beside them.
- ``weights_mb_float16`` / ``weights_mb_int8``, ``valid_nll_float`` / ``valid_nll_int8``
  (``--only int8``): the model's weight file as stored (float16) and as ``cadenza quantize`` stores
  it (int8, one scale per row), and the grammar-masked NLL per token of both on the first 20
  validation chorales of the music21 Bach corpus (the split training held out). int8 is a storage
  format only: int8 matmuls at batch 1 on this CPU measured 2.5-15x slower than float32 (torch's
  dynamic and weight-only int8 kernels), so the engine dequantizes on load.
- ``tokens_per_s_threads_{1,2}_{idle,busy}`` (``--only threads``): the speed protocol at 1 and 2 torch
  threads, alone and beside another process busy on one core; ``default_threads``: the engine's
  default for this machine (``cadenza.engine.threads``), ``usable_cores``.
- ``live_event_p99_ms``: a ``--live-seconds`` live session (generation ahead of playback) to an
  in-process sink: the 99th percentile of (sent - due) over every note event.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from foundation import STYLE_DATA, cut, emit, header_prompt, log, validation_pieces  # noqa: E402


# ---------------------------------------------------------------------------------------- speed
def cadenza_tokens_per_s(model, n: int, seed: int = 0, compile: bool = False) -> float:
    from cadenza.engine import SamplingConfig, StopConfig, stream

    prompt = header_prompt(model, "pop")
    sampling = SamplingConfig(temperature=1.0, top_p=0.95, repetition_penalty=1.0, seed=seed)
    stop = StopConfig(bars=10**9, max_tokens=n)  # a huge bar budget: EOS stays masked, exactly n tokens
    times = []
    for _ in stream(model.model, model.tokenizer, prompt, sampling=sampling, stop=stop,
                    constraints={"time_signature": (4, 4)}, compile=compile):
        times.append(time.perf_counter())
    return (len(times) - 1) / (times[-1] - times[0])


def hf_model(model):
    """The bundled weights in transformers' LlamaForCausalLM."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.model.cfg
    cfg = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.d_ff,
                      num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_heads,
                      max_position_embeddings=c.max_seq_len, rms_norm_eps=c.norm_eps, rope_theta=c.rope_theta,
                      hidden_act="silu", tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                      bos_token_id=model.tokenizer.bos_id, eos_token_id=None, pad_token_id=model.tokenizer.pad_id)
    hf = LlamaForCausalLM(cfg).eval()
    state = {("lm_head.weight" if k == "lm_head.weight" else f"model.{k}"): v
             for k, v in model.model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if "rotary" not in k]
    if missing or unexpected:
        raise RuntimeError(f"weights do not map onto LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        ids = torch.tensor([header_prompt(model, "pop") + [5, 6, 7]])
        diff = (hf(ids).logits - model.model(ids)).abs().max().item()
    return hf, diff


def hf_tokens_per_s(hf, model, n: int, seed: int = 0) -> float:
    import torch

    ids = torch.tensor([header_prompt(model, "pop")])
    kw = dict(do_sample=True, top_p=0.95, top_k=0, temperature=1.0, eos_token_id=None,
              pad_token_id=model.tokenizer.pad_id, use_cache=True)

    def run(k: int) -> float:
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = hf.generate(ids, max_new_tokens=k, min_new_tokens=k, **kw)
        assert out.shape[1] == ids.shape[1] + k
        return time.perf_counter() - t0

    run(4)  # warm-up
    one = float(np.median([run(1) for _ in range(3)]))  # prefill + the first token
    full = float(np.median([run(n) for _ in range(3)]))
    return (n - 1) / (full - one)


def machine_rates() -> tuple[float, float]:
    """(fp32 matmul FLOP/s, memory read bytes/s) of this machine, measured now."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(2):
        a @ b
    t0 = time.perf_counter()
    for _ in range(5):
        a @ b
    flops = 5 * 2 * 2048 ** 3 / (time.perf_counter() - t0)
    big = torch.randn(64 * 1024 * 1024)  # 256 MB: far beyond the caches
    for _ in range(2):
        big.sum()
    t0 = time.perf_counter()
    for _ in range(5):
        big.sum()
    bw = 5 * big.numel() * 4 / (time.perf_counter() - t0)
    return flops, bw


def floor_ms(model, n_tokens: int, flops_rate: float, bw: float) -> tuple[float, float, float]:
    """(floor ms, FLOPs per token, bytes per token) for batch-1 decoding at the mean position."""
    c = model.model.cfg
    params = sum(p.numel() for p in model.model.parameters())
    emb = model.model.embed_tokens.weight.numel()
    pos = len(header_prompt(model, "pop")) + n_tokens / 2  # mean cached length while timing
    flops = 2 * (params - emb) + c.n_layers * 4 * pos * c.d_model  # matmuls + attention (QK, AV)
    bytes_ = 4 * (params - emb + c.d_model) + c.n_layers * 2 * pos * c.d_model * 4  # weights + KV read
    return 1000 * max(flops / flops_rate, bytes_ / bw), flops, bytes_


def bench_speed(model, a) -> None:
    from cadenza.score import score_seconds

    cadenza_tokens_per_s(model, 16)  # warm-up
    tps = float(np.median([cadenza_tokens_per_s(model, a.tokens, seed=k) for k in range(3)]))
    emit("tokens_per_s_cadenza", tps)
    cadenza_tokens_per_s(model, 16, compile=True)  # compiles (seconds), then warm
    tps_c = float(np.median([cadenza_tokens_per_s(model, a.tokens, seed=k, compile=True) for k in range(3)]))
    emit("tokens_per_s_cadenza_compiled", tps_c)
    try:
        hf, diff = hf_model(model)
        emit("hf_max_logit_diff", diff)
        tps_hf = hf_tokens_per_s(hf, model, a.tokens)
        emit("tokens_per_s_hf", tps_hf)
        emit("speedup_vs_hf", tps / tps_hf)
        emit("speedup_compiled_vs_hf", tps_c / tps_hf)
    except ImportError:
        emit("tokens_per_s_hf", "skipped: pip install transformers to measure the peer")
    model.generate(max_tokens=8, seed=0)  # warm-up
    walls, music = [], []
    for k in range(3):
        t0 = time.perf_counter()
        score = model.generate(bars=16, seed=k)
        walls.append(time.perf_counter() - t0)
        music.append(score_seconds(score))
    emit("realtime_factor", float(np.median(np.array(music) / np.array(walls))))
    firsts = []
    for k in range(5):
        t0 = time.perf_counter()
        it = model.stream_notes(bars=4, seed=k)
        next(it)
        firsts.append(1000 * (time.perf_counter() - t0))
        it.close()
    emit("first_note_ms", float(np.median(firsts)))
    per_token = 1000 / tps
    per_token_c = 1000 / tps_c
    rate, bw = machine_rates()
    fl, flops, bytes_ = floor_ms(model, a.tokens, rate, bw)
    emit("matmul_gflops", rate / 1e9)
    emit("memory_read_gb_s", bw / 1e9)
    emit("model_mflop_per_token", flops / 1e6)
    emit("model_mb_per_token", bytes_ / 1e6)
    emit("per_token_ms", per_token)
    emit("per_token_ms_compiled", per_token_c)
    emit("floor_ms", fl)
    emit("per_token_over_floor", per_token / fl)
    emit("per_token_over_floor_compiled", per_token_c / fl)


def _tokens_per_s_at(model, threads: int, n: int) -> float:
    import torch

    torch.set_num_threads(threads)
    cadenza_tokens_per_s(model, 16)  # warm-up
    return float(np.median([cadenza_tokens_per_s(model, n, seed=k) for k in range(3)]))


def bench_threads(model, a) -> None:
    """Decoding speed at 1 and 2 threads, alone and beside a process busy on one core, and the
    engine's default (``cadenza.engine.threads.decode_threads``) for this machine."""
    import torch

    from cadenza.engine.threads import decode_threads, usable_cores

    before = torch.get_num_threads()
    emit("usable_cores", usable_cores())
    emit("default_threads", decode_threads())
    for k in (1, 2):
        emit(f"tokens_per_s_threads_{k}_idle", _tokens_per_s_at(model, k, a.tokens))
    peer = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # another busy process
    try:
        time.sleep(0.5)
        for k in (1, 2):
            emit(f"tokens_per_s_threads_{k}_busy", _tokens_per_s_at(model, k, a.tokens))
    finally:
        peer.kill()
        peer.wait()
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------ long piece
def bench_long(a) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "long.mid"
        code = ("import resource, sys, time; t0 = time.perf_counter(); from cadenza.cli import main; "
                f"rc = main(['generate', '--seconds', '240', '--seed', '0', '-q', '--out', {str(out)!r}]"
                + (f" + ['--model', {a.model!r}]" if a.model else "") + "); "
                "print('wall', time.perf_counter() - t0, file=sys.stderr); "
                # the child's own peak (VmHWM): ru_maxrss of a child also counts this process's memory (Linux
                # keeps the high-water mark across the exec of a vforked child)
                "import re; print('peak_kb', re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1], "
                "file=sys.stderr); sys.exit(rc)")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            emit("piece_240s_status", f"failed: {proc.stderr.strip().splitlines()[-1][:150]}")
            return
        peak_kb = int(re.search(r"peak_kb (\d+)", proc.stderr)[1])
        from cadenza.score import read_score, score_seconds

        emit("piece_240s_wall_s", wall)
        emit("piece_240s_music_s", score_seconds(read_score(out)))
        emit("piece_240s_peak_mb", peak_kb / 1024)


# ----------------------------------------------------------------------------------------- loops
def bench_loops(model, a) -> None:
    from cadenza.eval.metrics import loop_rate, scale_consistency
    from cadenza.score.bars import bar_starts

    styles = [s for s in STYLE_DATA if s in model.styles]
    gen = {"plain": dict(repetition_penalty=1.0, repeat="off"), "controlled": {}}  # controlled: the defaults
    res = {k: ([], []) for k in (*gen, "real")}
    for i in range(a.pieces):
        style = styles[i % len(styles)]
        for name, kw in gen.items():
            s = model.generate(style=style, bars=a.bars, seed=1000 + i, **kw)
            res[name][0].append(loop_rate(s))
            res[name][1].append(scale_consistency(s))
        log(f"long pieces: {i + 1}/{a.pieces} ({style})")
    # real: the first --bars bars of validation pieces of the same styles, in the same proportions
    for style in styles:
        spec = STYLE_DATA[style]
        spec = spec if spec.startswith("music21:") else str(Path(a.data) / spec)
        want = sum(1 for i in range(a.pieces) if styles[i % len(styles)] == style)
        got = 0
        for _, score in validation_pieces(spec, style):
            starts = bar_starts(score, int(score.end()) + 1)
            if len(starts) < 8:
                continue  # too short to say much about loops (as recipes/repeat_rates.py)
            end = int(starts[a.bars]) if len(starts) > a.bars else int(score.end()) + 1
            s = cut(score, int(starts[0]), end)
            res["real"][0].append(loop_rate(s))
            res["real"][1].append(scale_consistency(s))
            got += 1
            if got >= want:
                break
    for name, (lr, sc) in res.items():
        emit(f"loop_rate_{name}", float(np.nanmean(lr)) if lr else math.nan)
    for name, (lr, sc) in res.items():
        emit(f"scale_consistency_{name}", float(np.nanmean(sc)) if sc else math.nan)
    emit("loop_pieces", a.pieces)
    emit("loop_bars", a.bars)


# ------------------------------------------------------------------------------------------ live
def bench_live(model, a) -> None:
    try:
        from cadenza.live import measure_live_latency
    except ImportError as e:
        emit("live_event_p99_ms", f"skipped: {e}")
        return
    notes = model.stream_notes(seconds=a.live_seconds + 30, seed=0)
    r = measure_live_latency(notes, seconds=a.live_seconds)
    emit("live_events", r["events"])
    emit("live_event_p50_ms", float(r["p50_ms"]))
    emit("live_event_p99_ms", float(r["p99_ms"]))
    emit("live_event_max_ms", float(r["max_ms"]))
    emit("live_underruns", r["underruns"])


# ------------------------------------------------------------------------------------------ int8
def bench_int8(model, a) -> None:
    from cadenza.eval.likelihood import corpus_nll
    from cadenza.model import quantize_model_folder
    from cadenza.tasks import load_model
    from cadenza.train.corpora import Source, iter_pieces

    with tempfile.TemporaryDirectory() as tmp:
        quantize_model_folder(model.path, Path(tmp) / "int8")
        q = load_model(Path(tmp) / "int8")
        emit("weights_mb_float16", (Path(model.path) / "model.safetensors").stat().st_size / 1e6)
        emit("weights_mb_int8", (Path(tmp) / "int8" / "model.safetensors").stat().st_size / 1e6)
    seqs = []
    for _, score in iter_pieces(Source("music21:bach", "chorale"), only="valid"):
        seqs.append(model.tokenizer.encode(score, "chorale", eos=True))
        if len(seqs) == 20:
            break
    f = corpus_nll(model.model, seqs, tokenizer=model.tokenizer)
    i = corpus_nll(q.model, seqs, tokenizer=model.tokenizer)
    emit("valid_tokens", sum(map(len, seqs)))
    emit("valid_nll_float", f)
    emit("valid_nll_int8", i)
    emit("valid_nll_int8_rel_diff", abs(i - f) / f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model name or folder (default: the bundled default model)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared data folder")
    ap.add_argument("--tokens", type=int, default=256, help="new tokens per speed run (default 256)")
    ap.add_argument("--pieces", type=int, default=20, help="long pieces for the loop rates (default 20)")
    ap.add_argument("--bars", type=int, default=64, help="bars per long piece (default 64)")
    ap.add_argument("--live-seconds", type=float, default=120.0, help="live session length (default 120)")
    ap.add_argument("--only", default="speed,threads,long,loops,live,int8", help="comma-separated parts to run")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    from cadenza.tasks import load_model

    model = load_model(a.model)
    emit("model", model.name)
    emit("threads", a.threads)
    parts = set(a.only.split(","))
    if "speed" in parts:
        bench_speed(model, a)
    if "threads" in parts:
        bench_threads(model, a)
    if "long" in parts:
        bench_long(a)
    if "loops" in parts:
        bench_loops(model, a)
    if "live" in parts:
        bench_live(model, a)
    if "int8" in parts:
        bench_int8(model, a)


if __name__ == "__main__":
    main()
