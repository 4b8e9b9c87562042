"""A model is a self-describing folder: config.json, model.safetensors, README.md.

Loading never unpickles anything and guesses nothing from file names: the
config says what the weights are and which tokenizer reads them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cadenza.errors import ModelError
from cadenza.model.transformer import ModelConfig, Transformer

FORMAT = "cadenza-model"
FORMAT_VERSION = 1


# int8 storage: each row of a weight matrix (an output channel of a Linear, a token of the embedding)
# keeps its own absmax scale, the scheme of gpt-fast's weight-only int8. Only the file is int8: weights are
# dequantized to float on load, because on this engine's batch-1 CPU decode int8 matmuls measured 2.5-15x
# slower than float ones (see bench/generate_speed.py and the README); what int8 wins is half the file
# size of float16, so a model twice as large still fits a bundled folder's 25 MB.
SCALE_SUFFIX = ".int8_scale"


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 matrix, float16 scale per row) with ``w ~= q * scale[:, None]``."""
    scale = (w.detach().float().abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    q = torch.round(w.detach().float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scale.to(torch.float16)


def _storage_tensors(model: Transformer, weights: str) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if weights in ("float16", "float32", "bfloat16"):
        return {k: v.detach().to(getattr(torch, weights)).contiguous() for k, v in state.items()}
    if weights != "int8":
        raise ModelError(f"unknown weight storage {weights!r} (choose float16, float32, bfloat16 or int8)")
    out = {}
    for k, v in state.items():
        if v.ndim == 2 and v.shape[1] >= 32:  # matrices; norms and biases stay float16
            out[k], out[k + SCALE_SUFFIX] = quantize_rows(v)
        else:
            out[k] = v.detach().to(torch.float16).contiguous()
    return out


def save_model_folder(path: str | Path, model: Transformer, config: dict, card: str | None = None,
                      weights: str = "float16", extra: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """Write a model folder atomically. ``config`` holds the tokenizer, styles, provenance...

    ``extra``: more safetensors files of the folder, by file name (an audio model's codec), stored as float16.

    ``weights``: how the file stores them: ``float16`` (default: small, upcast on load), ``float32``,
    ``bfloat16`` or ``int8`` (per-row absmax; about half of float16's size).
    """
    path = Path(path)
    tensors = _storage_tensors(model, weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, **config, "model": model.cfg.to_dict(),
                "weights": weights,
                **({"extra_files": sorted(extra)} if extra else {})}
        (tmp / "config.json").write_text(json.dumps(full, indent=2) + "\n")
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": FORMAT})
        for name, state in (extra or {}).items():
            save_file({k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
                       for k, v in state.items()}, str(tmp / name), metadata={"format": FORMAT})
        if card is not None:
            (tmp / "README.md").write_text(card)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_config(path: str | Path) -> dict:
    """A model folder's config.json, its model section checked (``ModelConfig.check``); no weight is read."""
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelError(f"{path} is not a model folder (no config.json)")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{cfg_file}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{cfg_file}: cannot be read ({e.strerror if isinstance(e, OSError) else 'not text'})") \
            from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or "model" not in cfg:
        raise ModelError(f"{cfg_file}: not a cadenza model config")
    try:
        ModelConfig.from_dict(cfg["model"])
    except ModelError as e:
        raise ModelError(f"{cfg_file}: {e}") from None
    return cfg


def weight_shapes(weights: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{tensor name: (shape, dtype)} of a safetensors file, from its header alone (no tensor is loaded)."""
    if not weights.is_file():
        raise ModelError(f"{weights.parent}: no {weights.name}")
    try:
        with safe_open(str(weights), framework="pt") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise ModelError(f"{weights}: cannot read weights ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None


def check_weights(path: str | Path, mcfg: ModelConfig) -> None:
    """The folder's model.safetensors holds exactly the tensors ``mcfg`` implies, by the shapes in its
    header (so a config that does not describe its weights fails before any tensor is made); else one
    ModelError naming the file and the config field."""
    weights = Path(path) / "model.safetensors"
    problem = _shape_problem(mcfg, weight_shapes(weights))
    if problem:
        raise ModelError(f"{weights}: {problem}")


def _shape_problem(mcfg: ModelConfig, have: dict) -> str | None:
    fields = mcfg.param_fields()
    tensors = {k: v for k, v in have.items() if not k.endswith(SCALE_SUFFIX)}
    layers = {k.split(".")[1] for k in tensors if k.startswith("layers.")}
    if len(layers) != mcfg.n_layers:
        return f"config.json has model.n_layers {mcfg.n_layers} but the weights hold {len(layers)} layers"
    for name, dims in fields.items():
        if name not in tensors:
            return f"no tensor {name}, which config.json's model section implies"
        shape, want = tensors[name][0], tuple(getattr(mcfg, f) for f in dims)
        if shape != want:
            bad = next((f for f, a, b in zip(dims, shape, want) if a != b), dims[0])
            return (f"config.json has model.{bad} {getattr(mcfg, bad)} but the weights' {name} is "
                    f"{' x '.join(map(str, shape))}")
        if tensors[name][1] not in ("F16", "BF16", "F32", "I8"):
            return f"{name} is stored as {tensors[name][1]}, not a float or int8 type"
    extra = sorted(set(have) - set(fields) - {k + SCALE_SUFFIX for k in tensors if tensors[k][1] == "I8"})
    if extra:
        return f"tensor {extra[0]} is not one config.json's model section describes"
    for k, (shape, dtype) in tensors.items():
        if dtype == "I8" and have.get(k + SCALE_SUFFIX, ((), ""))[0] != shape[:1]:
            return f"int8 tensor {k} has no matching per-row scale"
    return None


def load_model_folder(path: str | Path, device: str = "cpu") -> tuple[Transformer, dict]:
    """Load (model, config) from a folder; weights come back as float32 on ``device``.

    The config and the weight file's header are checked first (``read_config``, ``check_weights``): a
    folder whose config asks for more than its weights hold fails with one line before any allocation."""
    path = Path(path)
    cfg = read_config(path)
    weights = path / "model.safetensors"
    mcfg = ModelConfig.from_dict(cfg["model"])
    check_weights(path, mcfg)
    model = Transformer(mcfg)
    try:
        state = load_file(str(weights), device=device)
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise ModelError(f"{weights}: cannot read weights ({e})") from None
    state = _dequantize(state, weights)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"{weights}: weights do not match config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.to(device).eval()
    return model, cfg


def load_extra(path: str | Path, name: str) -> dict[str, torch.Tensor]:
    """One of a model folder's extra safetensors files (see ``save_model_folder``), floats as float32."""
    f = Path(path) / name
    if not f.is_file():
        raise ModelError(f"{path}: no {name}")
    try:
        state = load_file(str(f))
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise ModelError(f"{f}: cannot read weights ({e})") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _dequantize(state: dict[str, torch.Tensor], where: Path) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if k.endswith(SCALE_SUFFIX):
            continue
        if v.dtype == torch.int8:
            scale = state.get(k + SCALE_SUFFIX)
            if scale is None or scale.shape != v.shape[:1]:
                raise ModelError(f"{where}: int8 tensor {k} has no matching per-row scale")
            out[k] = v.float() * scale.float()[:, None]
        else:
            out[k] = v.float()
    return out


def quantize_model_folder(src: str | Path, out: str | Path, weights: str = "int8") -> Path:
    """Re-store a model folder's weights (e.g. as int8); config and model card are carried over."""
    model, cfg = load_model_folder(src)
    src = Path(src)
    card = (src / "README.md").read_text() if (src / "README.md").is_file() else None
    extra = {name: load_extra(src, name) for name in cfg.get("extra_files", [])}
    cfg = {k: v for k, v in cfg.items() if k not in ("format", "format_version", "model", "weights", "extra_files")}
    return save_model_folder(out, model, cfg, card=card, weights=weights, extra=extra)
