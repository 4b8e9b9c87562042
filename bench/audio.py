"""Audio: transcription of rendered melodies, the audio codec, and the audio prior's continuations.

    python bench/audio.py [--data ../shared/data] [--melodies 20] [--seconds 20]
                          [--only transcription,codec,prior,continuation] [--model audio] [--clips 4]

Prints one ``name: value`` line per figure (progress on stderr). Protocols (issue 8):

- ``transcription_f1`` (with ``_precision`` and ``_recall``): ``--melodies`` validation tunes of the
  Nottingham folk corpus (the split training uses), the melody (first track) of each, its first
  ``--seconds`` seconds, rendered through the project's SoundFont renderer (FluidSynth with the General
  MIDI SoundFont when present; the renderer used is printed) on piano, flute, violin and clarinet in turn,
  then transcribed by ``cadenza.audio.transcribe``. Note-level F1 with mir_eval's conventions: a note is
  found when its onset is within 50 ms and its pitch within 50 cents (exact semitone); offsets ignored.
  Aim: >= 0.9. The transcriber's thresholds were tuned on these 20; ``--offset 20`` measures the next 20.
  ``transcription_realtime_factor``: seconds of audio per second of transcription.

Held-out audio for the rest: validation pieces (the split symbolic training uses, so none of them was
trained on) of the three families the bundled model learned, rendered here the way
``recipes/audio_data.py`` renders the training data (16 kHz mono, peak -1 dBFS): ``--clips`` per family.

- ``codec_tokens_per_s``, ``codec_kbps``: from the codec's config. ``codec_si_snr_db``: scale-invariant SNR
  of the decoded waveform against the original; ``codec_mel_distance``: mean absolute difference of their
  log-mel spectrograms (80 bands, natural log; ``_db``: the same in dB). ``gl_ceiling_*``: the same figures
  for Griffin-Lim on the original's exact magnitudes (what the phase reconstruction alone costs).
- ``prior_nll_valid``: the prior's mean negative log-likelihood per code token (nats) over every held-out
  clip's codes, in context windows of the model's length; ``_bits_per_s``: the same as bits per second.
- ``audio_realtime_factor``: seconds of audio continued per second of wall time (encoding the prompt,
  sampling, decoding; ``--threads``, default 2 cores), 5 s prompts continued by ``--continue-seconds``.
  Aim: >= 1 (Jukebox about 0.002 on a V100, MusicGen-small about 0.18 on a CPU).
- ``seam_distance``: the spectral distance between the prompt's last second and the continuation's first
  second (mean absolute difference of their mean log-mel spectra, in dB); ``adjacent_distance_real``: the
  same between the seconds before and after the 5 s mark of the real clips. ``continuation_style_recognized``:
  the share of prompts whose style, picked by the prior when none is given, is the clip's family.
  ``frame_repeat_rate_generated`` vs ``_real``: the share of code frames (the continuation re-encoded, and
  the real clip's next seconds) identical to the frame before: how much the audio stands still.
  Sampling: ``--temperature`` 1.0 and ``--top-p`` 1.0 (the defaults of ``cadenza audio``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from foundation import emit, log, validation_pieces  # noqa: E402

PROGRAMS = [(0, "piano"), (73, "flute"), (40, "violin"), (71, "clarinet")]


def _melody(piece, seconds: float):
    """The first track's notes starting in the first ``seconds`` seconds, as a one-track score."""
    import symusic

    from cadenza.score.build import ticks_to_seconds

    s = piece.copy()
    s.tracks = [s.tracks[0]]
    starts = ticks_to_seconds(s, np.array([n.time for n in s.tracks[0].notes]))
    keep = np.flatnonzero(starts < seconds)
    t = s.tracks[0]
    arr = t.notes.numpy()
    t.notes = symusic.Note.from_numpy(arr["time"][keep], arr["duration"][keep], arr["pitch"][keep],
                                      arr["velocity"][keep], "tick")
    return s


def _intervals(score):
    from cadenza.score.build import ticks_to_seconds

    notes = sorted((n.time, n.end, n.pitch) for t in score.tracks for n in t.notes)
    on = ticks_to_seconds(score, np.array([n[0] for n in notes]))
    off = ticks_to_seconds(score, np.array([n[1] for n in notes]))
    hz = 440.0 * 2 ** ((np.array([n[2] for n in notes], dtype=float) - 69) / 12)
    return np.stack([on, np.maximum(off, on + 1e-3)], axis=1), hz


def bench_transcription(a) -> None:
    import mir_eval

    from cadenza.audio.transcribe import transcribe_array
    from cadenza.render import render_audio

    p_all, r_all, f_all = [], [], []
    audio_s = wall = 0.0
    renderer = None
    for n, (pid, piece) in enumerate(validation_pieces(f"{a.data}/nottingham", "folk")):
        if n < a.offset:
            continue
        if n >= a.offset + a.melodies:
            break
        program, name = PROGRAMS[n % len(PROGRAMS)]
        mel = _melody(piece, a.seconds)
        mel.tracks[0].program = program
        audio = render_audio(mel, sample_rate=22050, name=pid)
        renderer = audio.renderer
        t = time.perf_counter()
        est = transcribe_array(audio.samples, audio.sample_rate, tempo=float(mel.tempos[0].qpm), program=program)
        wall += time.perf_counter() - t
        audio_s += audio.seconds
        ref_i, ref_p = _intervals(mel)
        est_i, est_p = _intervals(est)
        p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
            ref_i, ref_p, est_i, est_p, onset_tolerance=0.05, pitch_tolerance=50.0, offset_ratio=None)
        p_all.append(p), r_all.append(r), f_all.append(f)
        log(f"transcription {n + 1 - a.offset}/{a.melodies} {pid} ({name}): P {p:.3f} R {r:.3f} F1 {f:.3f}")
    emit("transcription_melodies", len(f_all))
    emit("transcription_renderer", renderer)
    emit("transcription_precision", float(np.mean(p_all)))
    emit("transcription_recall", float(np.mean(r_all)))
    emit("transcription_f1", float(np.mean(f_all)))
    emit("transcription_realtime_factor", audio_s / wall)


def heldout_clips(a, seconds: float = 10.0) -> list[tuple[str, str, np.ndarray]]:
    """(family, piece id, mono 16 kHz samples at -1 dBFS peak) of ``--clips`` validation pieces per family."""
    sys.path.insert(0, str(ROOT / "recipes"))
    from audio_data import SR, clip_seconds, instrumentate, sources

    from cadenza.audio.codec import at_peak
    from cadenza.render import render_audio
    from cadenza.train.corpora import Source, iter_pieces

    out = []
    for family, specs in sources(Path(a.data)).items():
        got = 0
        for n, (pid, piece) in enumerate(p for spec, style in specs for p in iter_pieces(Source(spec, style), only="valid")):
            if got >= a.clips:
                break
            s = clip_seconds(instrumentate(piece, family, n), seconds)
            audio = render_audio(s, sample_rate=SR, name=pid)
            y = audio.samples.mean(axis=1) if audio.samples.ndim == 2 else audio.samples
            if len(y) < seconds * SR * 0.9:
                continue
            out.append((family, pid, at_peak(y.astype(np.float32))))
            got += 1
    return out


def _log_mel_db(y: np.ndarray, codec) -> np.ndarray:
    import torch

    with torch.no_grad():
        lm = codec.log_mel(codec.log_mag(codec.stft(torch.from_numpy(np.ascontiguousarray(y))[None].float())))
    return lm[0].numpy() * (20 / np.log(10))  # natural log of magnitude -> dB


def spectral_distance(a: np.ndarray, b: np.ndarray, codec) -> float:
    """Mean absolute difference (dB) between the mean log-mel spectra of two stretches of audio."""
    return float(np.abs(_log_mel_db(a, codec).mean(1) - _log_mel_db(b, codec).mean(1)).mean())


def bench_codec(a, model, clips) -> None:
    import torch

    from cadenza.audio.codec import mel_distance, si_snr_db

    codec = model.codec
    cfg = codec.cfg
    emit("codec_tokens_per_s", cfg.tokens_per_s)
    emit("codec_kbps", cfg.kbps)
    snr, mel, gl_snr, gl_mel = [], [], [], []
    for family, pid, y in clips:
        x = torch.from_numpy(y)[None]
        rec = codec.decode(codec.encode(x))[0].numpy()
        n = len(rec)
        snr.append(si_snr_db(rec, y[:n]))
        mel.append(mel_distance(rec, y[:n], codec))
        with torch.no_grad():
            gl = codec.griffin_lim(codec.stft(codec.trim(x)).abs())[0].numpy()
        gl_snr.append(si_snr_db(gl, y[:n]))
        gl_mel.append(mel_distance(gl, y[:n], codec))
        log(f"codec {family} {pid}: SI-SNR {snr[-1]:.2f} dB, mel distance {mel[-1]:.3f} "
            f"(Griffin-Lim on true magnitudes: {gl_snr[-1]:.2f} dB, {gl_mel[-1]:.3f})")
    emit("codec_clips", len(clips))
    emit("codec_si_snr_db", float(np.mean(snr)))
    emit("codec_mel_distance", float(np.mean(mel)))
    emit("codec_mel_distance_db", float(np.mean(mel)) * 20 / np.log(10))
    emit("gl_ceiling_si_snr_db", float(np.mean(gl_snr)))
    emit("gl_ceiling_mel_distance", float(np.mean(gl_mel)))


def bench_prior(a, model, clips) -> None:
    import torch

    tok, prior = model.tokenizer, model.prior
    frames = (prior.cfg.max_seq_len - 2) // tok.n_q
    tot, n = 0.0, 0
    per_family: dict[str, list[float]] = {}
    for family, pid, y in clips:
        codes = model.encode(y)
        ft, fn = 0.0, 0
        for s in range(0, codes.shape[1], frames):
            ids = torch.tensor([tok.encode_codes(codes[:, s:s + frames], family if family in tok.styles else None)])
            prior.clear_cache()
            with torch.no_grad():
                logp = prior(ids[:, :-1]).log_softmax(-1)
            nll = -logp[0, 1:].gather(-1, ids[0, 2:, None]).squeeze(-1)
            ft += float(nll.sum())
            fn += len(nll)
        per_family.setdefault(family, []).append(ft / fn)
        tot += ft
        n += fn
    emit("prior_nll_valid", tot / n)
    emit("prior_nll_valid_bits_per_s", tot / n / np.log(2) * model.codec.cfg.tokens_per_s)
    for family, v in per_family.items():
        emit(f"prior_nll_valid_{family}", float(np.mean(v)))


def bench_continuation(a, model, clips) -> None:
    sr = model.sample_rate
    prompt_s = 5.0
    new_s = wall = 0.0
    seams, real, matched, stuck, stuck_real = [], [], [], [], []
    for k, (family, pid, y) in enumerate(clips):
        cut = int(prompt_s * sr)
        res = model.continue_audio(y[:cut], sr, a.continue_seconds, temperature=a.temperature, top_p=a.top_p, seed=k)
        new_s += res.seconds - prompt_s
        wall += res.wall_s
        cont = res.continuation
        matched.append(res.style == family)
        gen_codes, real_codes = model.encode(cont), model.encode(y[cut:cut + len(cont)])
        stuck.append(float((gen_codes[:, 1:] == gen_codes[:, :-1]).all(0).mean()))
        stuck_real.append(float((real_codes[:, 1:] == real_codes[:, :-1]).all(0).mean()))
        seams.append(spectral_distance(y[cut - sr:cut], cont[:sr], model.codec))
        real.append(spectral_distance(y[cut - sr:cut], y[cut:cut + sr], model.codec))
        log(f"continuation {family} {pid}: style {res.style}, {res.seconds - prompt_s:.1f} s in {res.wall_s:.2f} s, "
            f"seam {seams[-1]:.2f} dB (real {real[-1]:.2f} dB)")
    emit("audio_realtime_factor", new_s / wall)
    emit("continuation_style_recognized", float(np.mean(matched)))  # the style the prior picked = the clip's family
    emit("frame_repeat_rate_generated", float(np.mean(stuck)))
    emit("frame_repeat_rate_real", float(np.mean(stuck_real)))
    emit("seam_distance", float(np.mean(seams)))
    emit("adjacent_distance_real", float(np.mean(real)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--melodies", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--offset", type=int, default=0, help="skip this many validation melodies first (0: the protocol's)")
    ap.add_argument("--only", default="transcription,codec,prior,continuation")
    ap.add_argument("--model", default="audio", help="audio model (bundled name or folder)")
    ap.add_argument("--clips", type=int, default=4, help="held-out clips per instrument family")
    ap.add_argument("--continue-seconds", type=float, default=10.0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    parts = set(a.only.split(","))
    if "transcription" in parts:
        bench_transcription(a)
    if parts & {"codec", "prior", "continuation"}:
        import torch

        from cadenza.tasks.audio import load_audio_model

        torch.set_num_threads(a.threads)
        model = load_audio_model(a.model)
        clips = heldout_clips(a)
        log(f"{len(clips)} held-out clips of 10 s; model {model.name} from {model.path}")
        if "codec" in parts:
            bench_codec(a, model, clips)
        if "prior" in parts:
            bench_prior(a, model, clips)
        if "continuation" in parts:
            bench_continuation(a, model, clips)


if __name__ == "__main__":
    main()
