"""The training loop: resumable, atomic checkpoints, per-style validation loss.

Checkpoints are ``torch.save`` dicts of tensors and plain values, loaded with
``weights_only=True`` (no arbitrary unpickling). The finished model is written
as a model folder (config.json, model.safetensors, README.md).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cadenza.errors import CadenzaError
from cadenza.model import ModelConfig, Transformer, save_model_folder
from cadenza.tokenizers import FrameTokenizer, GridTokenizer, RemiSpec, RemiTokenizer
from cadenza.train.corpora import Source, WindowSampler, build_shards
from cadenza.train.stop import StopSignals


@dataclass
class TrainConfig:
    out: str
    data: list[str] = field(default_factory=list)
    steps: int = 3000
    batch_size: int = 16
    ctx: int = 512
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_batches: int = 8
    save_every: int = 100
    seed: int = 0
    transpose: int = 5
    valid_fraction: float = 0.05
    max_pieces: int | None = None
    max_minutes: float | None = None
    threads: int | None = None
    device: str = "auto"
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 8
    d_ff: int = 704
    dropout: float = 0.0
    pack: bool = False  # fill training rows with several windows (see WindowSampler); recipes turn it on
    precision: str = "fp32"  # fp32, or bf16: autocast the forward pass (about 1.8x faster on CPUs with
    # AVX512-BF16/AMX, e.g. 2.4 s -> 1.3 s per step for the chorale model on one core); weights and
    # optimizer stay fp32
    controls: tuple[str, ...] = ()  # remi only: "key", "instruments", "chords", "infill" (see RemiSpec)
    tokenizer: str = "remi"  # remi: multi-track scores with styles; grid: four-voice chorales at 16ths;
    # frames: piano-roll frames (the polyphonic benchmark)
    name: str = "cadenza-model"
    license: str = "see data sources"


def _mean(val: dict[str, float]) -> float:
    """Mean validation loss over styles."""
    return float(np.mean(list(val.values())))


def pick_device(name: str) -> str:
    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


def atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def evaluate(model, samplers: dict[str, WindowSampler], batch_size: int, batches: int, device) -> dict[str, float]:
    """Mean token loss per style on fixed validation windows (same windows every call)."""
    model.eval()
    out = {}
    for style, sampler in samplers.items():
        sampler.rng = np.random.default_rng(1234)
        tot, n = 0.0, 0
        for _ in range(batches):
            x, y = sampler.batch(batch_size)
            logits = model(torch.from_numpy(x).to(device))
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), torch.from_numpy(y).to(device).flatten(),
                                                     ignore_index=-100, reduction="sum")
            tot += loss.item()
            n += int((y != -100).sum())
        out[style] = tot / max(n, 1)
    model.train()
    return out


def _check_sizes(cfg: TrainConfig) -> None:
    """The model's sizes and the learning rate, before any data is read (--heads 0, --lr nan and
    --d-model -8 were tracebacks from deep inside torch)."""
    ModelConfig(vocab_size=1, d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_ff=cfg.d_ff,
                max_seq_len=cfg.ctx, dropout=cfg.dropout).check()
    for name, v in (("learning rate", cfg.lr), ("batch size", cfg.batch_size), ("steps", cfg.steps)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise CadenzaError(f"{name} must be a finite number greater than 0 (got {v})")


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, steps: int | None = None) -> Path:
    """Train (or resume) a model; returns the path of the finished model folder.

    With ``resume``, the run's saved settings are used; ``steps`` (if given) replaces its total.
    """
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    if resume:
        if not ckpt_path.exists():
            raise CadenzaError(f"nothing to resume: {ckpt_path} does not exist")
        ck = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        saved = ck["train_config"]
        cfg = TrainConfig(**{**saved, "out": cfg.out, "steps": steps or saved["steps"],
                             "max_minutes": cfg.max_minutes, "threads": cfg.threads})
        if ck["step"] >= cfg.steps:
            raise CadenzaError(f"{out} already trained {ck['step']} steps: give --steps above that to continue")
    else:
        cfg.steps = steps or cfg.steps
    if not resume and ckpt_path.exists():
        raise CadenzaError(f"{out} already has a checkpoint: add --resume to continue it, or pick another --out")
    if not cfg.data:
        raise CadenzaError("no training data: give at least one --data FOLDER or --data music21:NAME")
    _check_sizes(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.precision not in ("fp32", "bf16"):
        raise CadenzaError(f"unknown precision '{cfg.precision}' (fp32 or bf16)")
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)

    sources = [Source.parse(s) for s in cfg.data]
    styles = sorted({s.style for s in sources})
    if cfg.tokenizer == "remi":
        tok = RemiTokenizer(RemiSpec(styles=styles, controls=list(cfg.controls)))
    elif cfg.tokenizer == "grid":
        tok = GridTokenizer()
    elif cfg.tokenizer == "frames":
        tok = FrameTokenizer()
    else:
        raise CadenzaError(f"unknown tokenizer '{cfg.tokenizer}' (remi, grid or frames)")
    shards = build_shards(sources, tok, out / "data", cfg.valid_fraction, cfg.max_pieces, progress=progress)
    train_shards = {s: sh for (s, split), sh in shards.items() if split == "train"}
    valid_shards = {s: sh for (s, split), sh in shards.items() if split == "valid"}
    for s in styles:  # every style needs validation data; fall back to its training data if too small
        if s not in valid_shards and s in train_shards:
            valid_shards[s] = train_shards[s]
            print(f"train: style '{s}' has no held-out pieces; its validation loss is on training data",
                  file=sys.stderr)
    sampler = WindowSampler(train_shards, tok, cfg.ctx, seed=cfg.seed, transpose=cfg.transpose, pack=cfg.pack)
    vsamplers = {s: WindowSampler({s: sh}, tok, cfg.ctx, transpose=0) for s, sh in valid_shards.items()}
    stats = {f"{s}/{sp}": {"pieces": sh.n_pieces, "tokens": int(len(sh.tokens))} for (s, sp), sh in shards.items()}
    (out / "data_stats.json").write_text(json.dumps(stats, indent=2))

    mcfg = ModelConfig(vocab_size=tok.vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                       d_ff=cfg.d_ff, max_seq_len=cfg.ctx, dropout=cfg.dropout)  # never past trained positions
    model = Transformer(mcfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    step, history, best = 0, [], None
    if resume:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        step, history = ck["step"], json.loads(ck["history"])
        if "best_model" in ck:
            best = (ck["best_loss"], ck["best_step"], ck["best_model"])
        sampler.rng = np.random.default_rng(cfg.seed + step)
        torch.manual_seed(cfg.seed + step)

    def save_ckpt():
        atomic_torch_save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step,
                           "train_config": asdict(cfg), "history": json.dumps(history),
                           **({"best_loss": best[0], "best_step": best[1], "best_model": best[2]} if best else {})},
                          ckpt_path)

    t_start, tokens_seen = time.time(), 0
    bar = tqdm(total=cfg.steps, initial=step, desc="training", unit="step", disable=not progress, dynamic_ncols=True)
    model.train()
    with StopSignals() as signals:
        while step < cfg.steps:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            x, y = sampler.batch(cfg.batch_size)
            x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            tokens_seen += int((y != -100).sum())
            rate = tokens_seen / max(time.time() - t_start, 1e-9)
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{rate:.0f}")
            bar.update(1)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                val = evaluate(model, vsamplers, cfg.batch_size, cfg.eval_batches, device)
                history.append({"step": step, "train_loss": round(loss.item(), 4),
                                "valid": {k: round(v, 4) for k, v in val.items()}})
                bar.write(f"step {step}: train {loss.item():.3f}  valid " +
                          "  ".join(f"{k} {v:.3f}" for k, v in val.items()))
                mean_val = _mean(val)
                if best is None or mean_val < best[0]:  # the best weights so far, in case the run overfits
                    best = (mean_val, step, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
            if step % cfg.save_every == 0 or step == cfg.steps:
                save_ckpt()
            if cfg.max_minutes and (time.time() - t_start) / 60 > cfg.max_minutes:
                save_ckpt()
                bar.write(f"stopped after {cfg.max_minutes} minutes at step {step}; continue with --resume")
                break
            if signals.requested:
                save_ckpt()
                bar.close()
                print(f"train: stopped at step {step}; checkpoint saved in {ckpt_path}; continue with --resume",
                      file=sys.stderr)
                signals.stop()
    bar.close()
    final = out / "model"
    val = history[-1]["valid"] if history else evaluate(model, vsamplers, cfg.batch_size, cfg.eval_batches, device)
    weights_step = step
    # keep the final weights unless validation got clearly worse since its best (1%: more than the
    # noise of a few validation batches), i.e. the run overfitted
    if best is not None and best[1] != step and best[0] < 0.99 * _mean(val):
        weights_step = best[1]
        model.load_state_dict(best[2])  # validation got worse since: keep the best weights
        val = next(h["valid"] for h in history if h["step"] == best[1])
        bar.write(f"validation was best at step {best[1]}: the model folder holds those weights")
    meta = {
        "name": cfg.name,
        "family": FAMILIES[cfg.tokenizer],
        "tokenizer": tok.to_config(),
        "styles": styles,
        "license": cfg.license,
        "training": {"data": cfg.data, "steps": step, "weights_from_step": weights_step,
                     "config": asdict(cfg), "data_stats": stats,
                     "valid_loss": val, "history": history[-20:]},
    }
    save_model_folder(final, model.cpu(), meta, card=model_card(meta))
    model.to(device)
    return final


FAMILIES = {"remi": "remi-lm", "grid": "chorale-grid", "frames": "roll-frames"}
DESCRIPTIONS = {
    "grid": "chorale grid tokens (S A T B per 16th note, Music Transformer's JSB serialization)",
    "frames": "piano-roll frames (each frame's pitches lowest first, then an end-of-frame token)",
}


def model_card(meta: dict) -> str:
    t = meta["training"]
    c = t["config"]
    # a style with no held-out pieces is validated on its training data (train() falls back to it): say so
    no_valid = {s for s in meta["styles"] if f"{s}/train" in t["data_stats"] and f"{s}/valid" not in t["data_stats"]}
    rows = "\n".join(f"| {s} | {t['valid_loss'].get(s, float('nan')):.3f}"
                      f"{' (training data: no held-out pieces)' if s in no_valid else ''} |" for s in meta["styles"])
    data = "\n".join(f"- `{d}`" for d in t["data"])
    stats = "\n".join(f"| {k} | {v['pieces']} | {v['tokens']:,} |" for k, v in sorted(t["data_stats"].items()))
    extras = "".join([
        "; rows packed with several windows" if c.get("pack") else "",
        "; bf16 forward pass" if c.get("precision") == "bf16" else "",
        f"; weights from step {t['weights_from_step']} (best validation loss)"
        if t.get("weights_from_step", t["steps"]) != t["steps"] else ""])
    return f"""# {meta['name']}

A decoder-only transformer ({c['n_layers']} layers, d_model {c['d_model']}, {c['n_heads']} heads,
RoPE, context {c['ctx']}) over {"REMI tokens (miditok) with style tokens: " + ", ".join(meta['styles'])
    if c.get('tokenizer', 'remi') == 'remi' else DESCRIPTIONS[c['tokenizer']]}.

## Data

{data}

| style/split | pieces | tokens |
|---|---|---|
{stats}

License of the data: {meta['license']}

## Recipe

`cadenza train` with {t['steps']} steps, batch {c['batch_size']} x {c['ctx']} tokens, AdamW lr {c['lr']}
(cosine to {c['min_lr']}), transposition augmentation +-{c['transpose']} semitones, dropout {c.get('dropout', 0)},
seed {c['seed']}{extras}.

## Validation loss (nats per token, held-out pieces)

| style | loss |
|---|---|
{rows}
"""
