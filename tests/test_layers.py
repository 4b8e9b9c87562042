"""The import graph (issue 19; ../shared/guide/architecture.md, "Layers, imported in one direction").

Every ``import cadenza.X`` in the package, at module level or inside a function, is an edge between two
parts of the package (``score``, ``tokenizers``, ``engine``, ...; a top-level module is its own part). The
edges must stay inside ``ALLOWED``, a table of who may import whom, which itself has no cycle; ``score``
and ``tokenizers`` import no torch; nothing but the front ends imports a front end. Read from the source
with ``ast``: nothing is imported to check it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "cadenza"

BASE = {"errors", "limits", "files"}
# part: the parts it may import (besides itself and BASE), lowest layers first
ALLOWED = {
    "errors": set(), "limits": set(), "files": {"errors"},
    "score": set(),
    "eval": {"score"},
    "tokenizers": {"score"},  # bar geometry is score's (score/bars.py), not the metrics'
    "model": set(),
    "render": {"score"},
    "engine": {"model", "tokenizers", "score"},
    "train": {"model", "tokenizers", "score"},
    "audio": {"model", "tokenizers", "score", "render", "train"},  # codec and prior training, transcription
    "tasks": {"engine", "model", "tokenizers", "score", "eval", "audio", "render", "train"},
    "server": {"tasks", "engine", "model", "tokenizers", "score", "render"},
    "live": {"tasks", "engine", "score", "render"},  # playing in real time; its command is cli.live
    "cli": {"tasks", "engine", "model", "tokenizers", "score", "eval", "render", "audio", "train", "server", "live"},
    "__main__": {"cli"},
    "__init__": set(),  # the public API loads its parts lazily (by name, on first use)
}
FRONT_ENDS = {"cli", "server", "__main__"}
# edges that break the table today, each to be removed by issue 19's work: the test fails when one is gone
# (so that the table is tightened) and when a new one appears
KNOWN: set[tuple[str, str]] = set()  # (live -> cli, the one cycle, went when live's command moved to cli/live.py)


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def edges() -> tuple[dict[tuple[str, str], list[str]], set[str]]:
    """({(importer part, imported part): [importing modules]}, modules that import torch)."""
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    torch_users = set()
    for f in SRC.rglob("*.py"):
        rel = f.relative_to(SRC.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        package = module.split(".") if f.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "torch":
                    torch_users.add(module)
                if name.startswith("cadenza") and part_of(name) != part_of(module):
                    out[(part_of(module), part_of(name))].append(module)
    return out, torch_users


def test_the_table_itself_has_no_cycle():
    seen, done = set(), set()

    def visit(part, path):
        assert part not in seen - done, f"cycle: {' -> '.join(path + [part])}"
        if part in done:
            return
        seen.add(part)
        for dep in ALLOWED[part] | (BASE - {part} if part not in BASE else set()):
            visit(dep, path + [part])
        done.add(part)

    for part in ALLOWED:
        visit(part, [])


def test_every_import_follows_the_layers():
    found, _ = edges()
    assert {a for a, _ in found} | {b for _, b in found} <= set(ALLOWED), "a part the table does not know"
    broken = {(a, b): mods for (a, b), mods in found.items() if b not in ALLOWED[a] | BASE}
    assert set(broken) - KNOWN == set(), {k: v for k, v in broken.items() if k not in KNOWN}
    assert KNOWN - set(broken) == set(), "fixed: remove it from KNOWN"


def test_nothing_imports_a_front_end_and_score_and_tokenizers_import_no_torch():
    found, torch_users = edges()
    assert {(a, b) for a, b in found if b in FRONT_ENDS and a not in FRONT_ENDS} == set()
    assert sorted(m for m in torch_users if part_of(m) in ("score", "tokenizers")) == []


def _parser_defaults(argv: list[str]) -> dict:
    """{dest: default} of the subcommand ``argv`` names."""
    from cadenza.cli import build_parser

    parser = build_parser()
    for name in argv:
        parser = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]
    return {a.dest: a.default for a in parser._actions if a.dest != "help"}


def test_training_flags_default_to_their_dataclasses():
    """One set of defaults (issue 19): `audio train --codec-steps` said 3000 where AudioTrainConfig said 1500."""
    from dataclasses import fields

    from cadenza.audio.train import AudioTrainConfig
    from cadenza.train.loop import TrainConfig

    for argv, cls in ((["train"], TrainConfig), (["audio", "train"], AudioTrainConfig)):
        flags, d = _parser_defaults(argv), cls(out="")
        shared = [f.name for f in fields(cls) if f.name in flags and f.name not in ("out", "data", "steps")]
        assert len(shared) >= 8, shared
        assert {k: flags[k] for k in shared} == {k: getattr(d, k) for k in shared}, argv
    assert _parser_defaults(["audio", "train"])["n_layers"] == AudioTrainConfig(out="").n_layers  # --layers too
