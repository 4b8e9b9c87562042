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
from safetensors.torch import load_file, save_file

from cadenza.errors import ModelError
from cadenza.model.transformer import ModelConfig, Transformer

FORMAT = "cadenza-model"
FORMAT_VERSION = 1


def save_model_folder(path: str | Path, model: Transformer, config: dict, card: str | None = None,
                      dtype: torch.dtype = torch.float16) -> Path:
    """Write a model folder atomically. ``config`` holds the tokenizer, styles, provenance..."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, **config, "model": model.cfg.to_dict()}
        (tmp / "config.json").write_text(json.dumps(full, indent=2) + "\n")
        # weights only; half precision keeps bundled models small (they are upcast on load)
        tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": FORMAT})
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
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelError(f"{path} is not a model folder (no config.json)")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{cfg_file}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if cfg.get("format") != FORMAT or "model" not in cfg:
        raise ModelError(f"{cfg_file}: not a cadenza model config")
    return cfg


def load_model_folder(path: str | Path, device: str = "cpu") -> tuple[Transformer, dict]:
    """Load (model, config) from a folder; weights come back as float32 on ``device``."""
    path = Path(path)
    cfg = read_config(path)
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ModelError(f"{path}: no model.safetensors")
    model = Transformer(ModelConfig.from_dict(cfg["model"]))
    try:
        state = load_file(str(weights), device=device)
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise ModelError(f"{weights}: cannot read weights ({e})") from None
    state = {k: v.float() for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"{weights}: weights do not match config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.to(device).eval()
    return model, cfg
