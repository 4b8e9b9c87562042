"""Copy a trained run's model folder into the package as a bundled model.

    python recipes/bundle.py runs/default/model src/cadenza/models/small --default-style pop

Records the style used when none is asked for and checks the size limit (25 MB).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

LIMIT_MB = 25


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--default-style")
    ap.add_argument("--recipe-note", help="a paragraph for the model card: how to reproduce it")
    ap.add_argument("--metrics", type=Path, help="a file of benchmark lines (name: value) for the model card")
    ap.add_argument("--metrics-command", default="", help="the command that printed --metrics")
    a = ap.parse_args()
    cfg = json.loads((a.src / "config.json").read_text())
    if a.default_style:
        if a.default_style not in cfg["styles"]:
            sys.exit(f"bundle: style '{a.default_style}' is not one of {cfg['styles']}")
        cfg["default_style"] = a.default_style
    size = sum(f.stat().st_size for f in a.src.iterdir()) / 2**20
    if size > LIMIT_MB:
        sys.exit(f"bundle: {a.src} is {size:.1f} MB, over the {LIMIT_MB} MB limit")
    tmp = a.dest.with_name(a.dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(a.src, tmp)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if cfg.get("family") == "audio-lm":
        from cadenza.audio.train import audio_model_card

        (tmp / "README.md").write_text(audio_model_card(cfg))
    elif "config" in cfg.get("training", {}):  # the card from the current card writer (a run's may be older)
        from cadenza.train.loop import model_card

        (tmp / "README.md").write_text(model_card(cfg))
    if a.recipe_note:
        card = tmp / "README.md"
        card.write_text(card.read_text() + "\n## Reproduce\n\n" + a.recipe_note + "\n")
    if a.metrics:
        card = tmp / "README.md"
        lines = "\n".join(f"    {ln}" for ln in a.metrics.read_text().splitlines() if ": " in ln)
        cmd = f"Measured with `{a.metrics_command}`:\n\n" if a.metrics_command else ""
        card.write_text(card.read_text() + "\n## Metrics\n\n" + cmd + lines + "\n")
    shutil.rmtree(a.dest, ignore_errors=True)
    tmp.rename(a.dest)
    print(f"bundled {a.src} -> {a.dest} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
