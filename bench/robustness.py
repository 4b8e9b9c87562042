"""Robustness benchmark (issue 18, "safe by default"): broken input through every command and every route.

    python bench/robustness.py [--quick] [--seed 0] [--cases 40] [--fuzz-seconds 120] [--jobs 2]
                               [--timeout 150] [--memory-gb 4] [--only cli,api,fuzz] [--filter REGEX]
                               [--fresh] [--keep]

A corpus is built in a temporary folder (bench/robustness_cases.py): every hostile case of the issue by hand
(ABC includes of a canary file and /dev/urandom, the 1.9 GB .mxl bomb, 10,000 tracks, a note 2^28 ticks
long, ticks per quarter 0, tempo 0, 1,000,000 notes, WAVs with NaN samples, a 1-hour silence, ...) and
``--cases`` seeded mutants per format of valid MIDI, ABC, MusicXML, MXL and WAV seeds. Each file goes
through every command that reads it; parameter extremes and broken model folders (a tiny random model made
here, and broken copies) go through theirs. A child is a fork of a process that has cadenza, torch and
music21 loaded (``--fresh``: a new Python each), in its own session, killed at ``--timeout``, its address
space capped at ``--memory-gb`` (a runaway allocation becomes a MemoryError, never the OOM killer). Then one
real ``cadenza serve`` gets every file as an upload and every route absurd JSON, huge and chunked bodies,
path tricks and Host/Origin/token attacks, while /api/health is timed during heavy work. Last, the parser
properties of tests/test_fuzz.py run for ``--fuzz-seconds`` in a capped child (hypothesis: property-based
mutation of valid seeds, random seeds per batch; not coverage-guided).

Prints one ``name: value`` line per figure on stdout (progress and every failing case on stderr):

- ``cases``: CLI runs; each is one of ``results`` (exit 0, wrote something), ``clean_errors`` (exit 1 or 2
  with one ``cadenza...: error:`` line, maybe ``note:`` lines), ``messy_errors`` (no traceback, but other
  lines on stderr, e.g. a library's warning, or exit 0 with nothing written), ``tracebacks`` (a traceback,
  an "internal error" report, or death by a signal) and ``timeouts``; ``cat_<category>_<outcome>`` split them.
  Once reading a file has timed out, its other commands are not run (``skipped_after_timeout``).
- ``peak_rss_mb``: the largest peak RSS of a CLI child (from wait4: a forked child counts the pages of the
  preloaded modules it touches; ``zygote_rss_mb`` is the preloading process) or of the server's processes;
  ``cases_over_2gb``. ``audit_self_check`` is 1 when a control case told to read the canary was caught.
- ``http_requests``, ``http_5xx``, ``http_dropped`` (the connection failed), ``http_client_timeouts`` (no
  answer within ``--timeout``: the bench gave up), ``job_internal_errors`` (a job that ended in "internal
  error"), ``guard_bypassed`` (a Host/Origin/token attack answered 2xx or 3xx),
  ``health_ms_max_during_heavy`` / ``health_ms_p50_during_heavy``.
- ``files_read_outside``: CLI cases that opened a file outside their input, output, models and Python (an
  audit hook on "open" in every cadenza process: sitecustomize.py through PYTHONPATH), or wrote the
  canary's token or /etc/passwd's first line, or turned the canary's notes into output notes; plus server
  answers showing either, plus files the server's processes opened outside their roots.
- ``fuzz_examples``, ``fuzz_failures``, ``fuzz_slowest_s``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robustness_cases as rc  # noqa: E402
from foundation import log  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PASSWD = b"root:x:0:0"
CANARY_CASES = re.compile(r"include|ptstress|continued|inline_I|xxe|xinclude|dtd_|rootfile")
OUTCOMES = ("results", "clean_errors", "messy_errors", "tracebacks", "timeouts")


def emit(name: str, value) -> None:  # foundation.emit, with one decimal (counts and milliseconds)
    if isinstance(value, float):
        value = "nan" if math.isnan(value) else f"{value:.1f}"
    print(f"{name}: {value}", flush=True)


# ------------------------------------------------------------------------------------ the cases
OUT = ["-q", "--out", "{out}/out.mid"]
SCORE_CMDS = {  # the first two run in --quick mode
    "render": ["render", "{in}", *OUT],
    "generate": ["generate", "--prompt", "{in}", "--model", "{tiny}", "--bars", "1", *OUT],
    "edit": ["edit", "{in}", "--transpose", "1", "-q", "--out", "{out}/out.musicxml", "--out", "{out}/out.abc"],
    "render-audio": ["render", "{in}", "--renderer", "builtin", "-q", "--out", "{out}/out.wav",
                     "--out", "{out}/roll.png"],
    "render-sheet": ["render", "{in}", "-q", "--out", "{out}/out.svg"],
    "harmonize": ["harmonize", "{in}", "--particles", "2", *OUT],
    "arrange": ["arrange", "{in}", "--add", "bass", *OUT],
    "infill": ["infill", "{in}", "--bars", "1-1", *OUT],
}
WAV_CMDS = {
    "transcribe": ["transcribe", "{in}", *OUT],
    "audio-continue": ["audio", "continue", "{in}", "--seconds", "0.5", "-q", "--out", "{out}/out.wav"],
    "spectrogram": ["render", "{in}", "-q", "--out", "{out}/out.png"],
    "generate-hummed": ["generate", "--prompt", "{in}", "--model", "{tiny}", "--bars", "1", *OUT],
}
G = ["generate", "--model", "{tiny}", "--bars", "1", *OUT]
TINY = ["--steps", "2", "--d-model", "16", "--layers", "1", "--heads", "2", "--d-ff", "16", "--ctx", "32",
        "--batch-size", "2"]
PARAMS = [  # (name, argv); "{seed_mid}" etc. are valid seeds
    *[(f"generate {' '.join(x)}", ["generate", "--model", "{tiny}", *x, *OUT]) for x in [
        ["--bars", "1000000000"], ["--seconds", "1e9"], ["--seconds", "inf"], ["--seconds", "nan"],
        ["--seconds", "0.00001"], ["--max-tokens", "10000000000000000000000"], ["--bars", "1", "--max-tokens", "0"]]],
    *[(f"generate {' '.join(x)}", [*G, *x]) for x in [
        ["--seed", "-1"], ["--seed", "18446744073709551616"], ["--seed", "9" * 400], ["--temperature", "inf"],
        ["--temperature", "0"], ["--temperature", "1e-320"], ["--temperature", "1e308"], ["--top-k", "0"],
        ["--top-k", "-1"], ["--top-k", "99999999999999"], ["--top-p", "0"], ["--top-p", "1e-320"], ["--top-p", "2"],
        ["--repetition-penalty", "-1"], ["--repetition-penalty", "nan"], ["--repetition-penalty", "1e308"],
        ["--variations", "1000000000"], ["--chords", "C G", "--repeat", "1000000000"], ["--tempo", "1e-300"],
        ["--tempo", "1e308"], ["--meter", "0/4"], ["--meter", "4/0"], ["--meter", "99999999/4"], ["--meter", "4/3"],
        ["--meter", "-4/4"], ["--key", "H"], ["--key", "C\nmajor"], ["--instruments", "kazoo"],
        ["--instruments", "999"],
        ["--instruments", ",,,"], ["--instruments", "piano," * 5000], ["--notes", "C4/0"], ["--notes", "C4*99999999"],
        ["--notes", "C99"], ["--notes", ""], ["--notes", "[" * 10000], ["--notes", "C4/" + "9" * 5000],
        ["--chords", "Xyz7b13#11"], ["--chords", "C/Z"], ["--chords", "| " * 100000], ["--restate", "2"],
        ["--restate", "nan"], ["--style", "nonexistent"], ["--model", "../../etc"], ["--model", ""],
        ["--prompt", "/etc/passwd"], ["--prompt", "{corpus}"], ["--out", "{out}/noext"],
        ["--out", "/nonexistent/x.mid"],
        ["--out", "{out}"], ["--out", "{out}/x.exe"]]],
    *[(f"audio generate {' '.join(x)}", ["audio", "generate", *x, "-q", "--out", "{out}/out.wav"]) for x in [
        ["--seconds", "0.00001"], ["--seconds", "1e9"], ["--seconds", "inf"], ["--seconds", "nan"],
        ["--seconds", "0.5", "--temperature", "inf"], ["--seconds", "0.5", "--top-p", "1e-320"],
        ["--seconds", "0.5", "--style", "nope"], ["--seconds", "0.5", "--seed", "-1"]]],
    *[(f"harmonize {' '.join(x)}", ["harmonize", *x, *OUT]) for x in [
        ["--notes", "C4/0"], ["--notes", "C4*99999999"], ["--notes", "C4 D4", "--particles", "1000000000"],
        ["{seed_mid}", "--keep", "bass:1-999999999"], ["{seed_mid}", "--regenerate", "junk"],
        ["{seed_mid}", "--regenerate", "tenor:0.0-0.0"], ["--notes", "C4 D4", "--key", "H"],
        ["--notes", "C4 D4", "--meter", "0/0"], ["--notes", "C4 D4", "--tempo", "1e308"],
        ["--notes", "C4 D4", "--variations", "1000000000"], ["--notes", "C4 D4", "--regenerate", "1-999999999"]]],
    *[(f"edit {' '.join(x)}", ["edit", "{seed_mid}", *x, *OUT]) for x in [
        ["--transpose", "1000000000"], ["--transpose", "-1000000000"], ["--tempo", "1e-300"], ["--tempo", "1e308"],
        ["--program", "999=cello"], ["--program", "1=kazoo"], ["--program", "0=piano"], ["--quantize", "1/0"],
        ["--quantize", "1/999999"]]],
    *[(f"render {' '.join(x)}", ["render", "{seed_mid}", *x, "-q", "--out", "{out}/out.wav"]) for x in [
        ["--sample-rate", "1"], ["--sample-rate", "99999999999"], ["--soundfont", "{seed_mid}"],
        ["--renderer", "fluidsynth"]]],
    *[(f"infill {' '.join(x)}", ["infill", "{seed_mid}", *x, *OUT]) for x in [
        ["--bars", "0-0"], ["--bars", "5-1"], ["--bars", "1-1000000000"], ["--bars", "99999999999999999999-1"],
        ["--bars", "1-1", "--tracks", "999"], ["--bars", "1-1", "--tracks", "kazoo"]]],
    *[(f"arrange {' '.join(x)}", ["arrange", "{seed_mid}", *x, *OUT]) for x in [
        ["--add", ""], ["--add", "kazoo"], ["--add", "piano," * 1000], ["--add", "bass", "--key", "H"]]],
    *[(f"transcribe {' '.join(x)}", ["transcribe", "{seed_wav}", *x, *OUT]) for x in [
        ["--tempo", "1e-300"], ["--tempo", "1e308"], ["--quantize", "1/0"], ["--instrument", "drums"],
        ["--instrument", "999"]]],
    *[(f"train {' '.join(x)}", ["train", "--out", "{out}/run", "-q", *x]) for x in [
        ["--data", "/nonexistent"], ["--data", "{corpus}/mid=broken", *TINY], ["--data", "{corpus}/wav", *TINY],
        ["--data", "{seeds}", "--heads", "0", "--steps", "1"], ["--data", "{seeds}", "--lr", "nan", *TINY],
        ["--data", "{seeds}", "--ctx", "0", "--steps", "1"], ["--data", "{seeds}", "--d-model", "-8", "--steps", "1"]]],
    ("quantize valid", ["quantize", "{tiny}", "--out", "{out}/q"]),
    ("quantize onto itself", ["quantize", "{tiny}", "--out", "{tiny}"]),
    ("play", ["play", "{seed_mid}"]), ("live", ["live", "--seconds", "1"]),
    ("serve --port 99999999", ["serve", "--port", "99999999"]), ("serve --port -1", ["serve", "--port", "-1"]),
    ("serve --host junk", ["serve", "--host", "no such host", "--port", "1"]),
]


def file_cases(corpus: dict[str, list[Path]], quick: bool) -> list[dict]:
    out = []
    for kind, paths in corpus.items():
        cmds = WAV_CMDS if kind == "wav" else SCORE_CMDS
        for path in paths:
            cat = "mutant" if path.name.startswith("mut-") else "hostile"
            for cmd in list(cmds)[:2] if quick else cmds:
                out.append({"name": f"{cmd} {kind}/{path.name}", "category": f"{cat}_{kind}", "input": path,
                            "argv": cmds[cmd]})
    return out


def model_cases(models: dict[str, Path], bad_root: Path, quick: bool) -> list[dict]:
    out = []
    for name, path in models.items():
        if name == "tiny":
            continue
        out.append({"name": f"generate --model {name}", "category": "models",
                    "argv": [*G[:1], "--model", str(path), *G[3:]]})
        if not quick:
            out += [{"name": f"harmonize --model {name}", "category": "models",
                     "argv": ["harmonize", "--notes", "C4 D4 E4 F4", "--model", str(path), *OUT]},
                    {"name": f"audio generate --model {name}", "category": "models",
                     "argv": ["audio", "generate", "--model", str(path), "--seconds", "1", "-q",
                              "--out", "{out}/o.wav"]},
                    {"name": f"quantize {name}", "category": "models",
                     "argv": ["quantize", str(path), "--out", "{out}/q"]}]
    env = {"CADENZA_MODELS": str(bad_root)}
    out += [{"name": "models with broken folders in $CADENZA_MODELS", "category": "models", "argv": ["models"],
             "env": env},
            {"name": "generate --model heads_0 (by name, from $CADENZA_MODELS)", "category": "models",
             "argv": [*G[:1], "--model", "heads_0", *G[3:]], "env": env},
            {"name": "models with $CADENZA_MODELS a file", "category": "models", "argv": ["models"],
             "env": {"CADENZA_MODELS": str(models["is_a_file"])}},
            {"name": "serve --model heads_0", "category": "models", "timeout": 30,
             "argv": ["serve", "--model", str(models["heads_0"]), "--port", "1"]}]
    return out


# ------------------------------------------------------------------------------------- running
class Runner:
    """Runs requests in forked children of ``jobs`` zygotes (or fresh processes with ``fresh``)."""

    def __init__(self, work: Path, jobs: int, fresh: bool):
        self.work, self.fresh, self.pool, self.rss = work, fresh, queue.Queue(), 0.0
        self.site = work / "site"
        self.site.mkdir(exist_ok=True)
        (self.site / "sitecustomize.py").write_text(rc.SITECUSTOMIZE)
        if fresh:  # compiled once before children run at once (see robustness_cases.warm_numba)
            subprocess.run([sys.executable, str(HERE / "robustness_cases.py"), "--warm"], cwd=REPO, check=False)
        for k in range(0 if fresh else jobs):
            self.pool.put(self._zygote(k))

    def _zygote(self, k: int) -> subprocess.Popen:
        err = open(self.work / f"zygote-{k}.err", "ab")
        z = subprocess.Popen([sys.executable, str(HERE / "robustness_cases.py"), "--zygote"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
        self.rss = max(self.rss, json.loads(z.stdout.readline())["rss_mb"])
        return z

    def run(self, req: dict) -> dict:
        if self.fresh:
            env = {**os.environ, "PYTHONPATH": str(self.site)}
            p = subprocess.Popen([sys.executable, str(HERE / "robustness_cases.py"), "--one",
                                  json.dumps({**req, "audit": False, "env": {}})], env={**env, **req["env"]},
                                 start_new_session=True, cwd=REPO)
            return rc.wait_child(p.pid, req["timeout"])
        z = self.pool.get()
        try:
            z.stdin.write(json.dumps(req) + "\n")
            z.stdin.flush()
            return json.loads(z.stdout.readline())
        except (OSError, ValueError) as e:
            z.kill()
            z = self._zygote(99)
            return {"rc": -1, "signal": 0, "timed_out": False, "wall_s": 0.0, "rss_mb": 0.0, "bench_error": str(e)}
        finally:
            self.pool.put(z)

    def close(self) -> None:
        while not self.pool.empty():
            z = self.pool.get()
            z.stdin.close()
            z.wait(timeout=30)


def fill(argv: list[str], vals: dict) -> list[str]:
    return [re.sub(r"\{(\w+)\}", lambda m: str(vals.get(m[1], m[0])), a) for a in argv]


def run_case(k: int, case: dict, ctx: dict, runner: Runner, args) -> dict:
    d = ctx["work"] / "cases" / f"{k:04d}"
    (d / "out").mkdir(parents=True, exist_ok=True)
    (d / "tmp").mkdir(exist_ok=True)
    vals = {**ctx, "in": str(case.get("input", "")), "out": str(d / "out")}
    argv = fill(case["argv"], vals)
    inputs = [case["input"]] if "input" in case else []
    roots = rc.allowed_roots(d, ctx["models_root"], *ctx["seeds_dir"], *inputs, *ctx["allow_corpus"](argv))
    env = {"TMPDIR": str(d / "tmp"), "CADENZA_MODELS": str(ctx["local"]), "ROBUST_AUDIT_LOG": str(d / "audit.log"),
           "ROBUST_AUDIT_ALLOW": os.pathsep.join(roots), **case.get("env", {})}
    req = {"argv": argv, "cwd": str(d), "env": env, "timeout": case.get("timeout", args.timeout), "audit": True,
           "stdout": str(d / "stdout"), "stderr": str(d / "stderr"), "memory": int(args.memory_gb * (1 << 30))}
    res = runner.run(req)
    if "bench_error" in res:  # the zygote itself failed (and was restarted): nothing is known of this case
        log(f"[bench error] {case['name']}: {res['bench_error']}")
        return {**res, "case": case, "argv": argv, "outcome": "skipped", "stderr": "", "outside": []}
    err = (d / "stderr").read_text(errors="replace") if (d / "stderr").is_file() else ""
    res.update(case=case, argv=argv, dir=d, outcome=classify(res, err, d), stderr=err,
               outside=outside(case, d, ctx))
    return res


def classify(res: dict, err: str, d: Path) -> str:
    if res["timed_out"]:
        return "timeouts"
    if res["signal"] or res["rc"] not in (0, 1, 2) or "Traceback" in err or "internal error" in err:
        return "tracebacks"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    other = [ln for ln in lines if not ln.startswith(("cadenza", "note:", "prompt:"))]
    if res["rc"] == 0:
        wrote = any(p.is_file() for p in (d / "out").rglob("*")) or (d / "stdout").stat().st_size > 0
        return "results" if wrote and not other else "messy_errors"
    errors = [ln for ln in lines if re.match(r"cadenza[\w -]*: error", ln)]
    return "clean_errors" if len(errors) == 1 and not other else "messy_errors"


def outside(case: dict, d: Path, ctx: dict) -> list[str]:
    """What the case read outside its roots: the audit log's paths, the canary's token or /etc/passwd in
    its output, and for a case built to read the canary, a C#5 (the canary's note) in its output."""
    found = []
    audit = d / "audit.log"
    if audit.is_file():
        found += sorted({ln.split("\t", 1)[1] for ln in audit.read_text(errors="replace").splitlines()
                         if "\t" in ln and not ln.endswith("\t<hooked>")})
    for p in [d / "stdout", d / "stderr", *(d / "out").rglob("*")]:
        if p.is_file() and p.stat().st_size < 50_000_000:
            data = p.read_bytes()
            found += [f"{p.name} holds {what}" for what, needle in (("the canary", ctx["token"].encode()),
                                                                    ("/etc/passwd", PASSWD)) if needle in data]
    mid = d / "out" / "out.mid"
    keeps_notes = case["argv"][0] in ("render", "edit")  # generate adds the model's own notes
    if "input" in case and CANARY_CASES.search(case["input"].name) and keeps_notes and mid.is_file():
        import symusic

        if any(n.pitch == 73 for t in symusic.Score(str(mid)).tracks for n in t.notes):
            found.append("out.mid has the canary's notes (C#5)")
    return found


def run_cli(cases: list[dict], ctx: dict, args) -> tuple[list[dict], float]:
    runner = Runner(ctx["work"], args.jobs, args.fresh)
    log(f"{len(cases)} CLI cases, {args.jobs} at a time; children start at {runner.rss:.0f} MB")
    done: list[dict] = []
    t0 = time.monotonic()
    timed_out: set[Path] = set()  # inputs whose reading already ran past --timeout: not again with each command

    def one(item):
        k, case = item
        if case.get("input") in timed_out:
            r = {"case": case, "argv": case["argv"], "outcome": "skipped", "stderr": "", "outside": [], "rc": 0,
                 "wall_s": 0.0, "rss_mb": 0.0}
        else:
            r = run_case(k, case, ctx, runner, args)
        if r["outcome"] == "timeouts" and "input" in case:
            timed_out.add(case["input"])
        done.append(r)
        if len(done) % 25 == 0:
            log(f"  {len(done)}/{len(cases)} cases, {time.monotonic() - t0:.0f} s")
        return r

    try:
        with ThreadPoolExecutor(max(1, args.jobs)) as ex:
            results = list(ex.map(one, enumerate(cases)))
    finally:
        runner.close()
    return results, runner.rss


def report_cli(results: list[dict]) -> dict:
    control = [r for r in results if r["case"]["category"] == "control"]
    skipped = sum(r["outcome"] == "skipped" for r in results)
    results = [r for r in results if r["case"]["category"] != "control" and r["outcome"] != "skipped"]
    figures = Counter(r["outcome"] for r in results)
    cats = Counter((r["case"]["category"], r["outcome"]) for r in results)
    for r in results:
        cmd = "cadenza " + " ".join(a if len(a) < 120 else a[:60] + f"...({len(a)} chars)" for a in r["argv"])
        first = "\n      ".join(r["stderr"].strip().splitlines()[:6])[:1200]
        if r["outcome"] in ("tracebacks", "timeouts", "messy_errors"):
            log(f"[{r['outcome']}] {r['case']['name']} (rc {r['rc']}, {r['wall_s']:.1f} s, {r['rss_mb']:.0f} MB)\n"
                f"    {cmd}\n      {first}")
        if r["outside"]:
            log(f"[read outside] {r['case']['name']}: {', '.join(r['outside'][:5])}\n    {cmd}")
        if r["outcome"] == "results" and r["case"]["category"].startswith(("hostile", "params", "models")):
            log(f"[accepted] {r['case']['name']}")
    walls: dict[str, list[float]] = {}
    for r in results:
        walls.setdefault(" ".join(r["argv"][:2] if r["argv"][0] == "audio" else r["argv"][:1]), []).append(r["wall_s"])
    log("wall time by command: " + ", ".join(f"{k} {sum(v):.0f} s / {len(v)}" for k, v in sorted(walls.items())))
    return {"figures": figures, "cats": cats, "rss": max((r["rss_mb"] for r in results), default=0.0),
            "skipped": skipped,
            "audit_works": int(bool(control) and all(any("canary.abc" in o for o in r["outside"]) for r in control)),
            "outside": sum(bool(r["outside"]) for r in results)}


# -------------------------------------------------------------------------------------- the API
from robustness_api import api_phase  # noqa: E402  (the studio half)


# ------------------------------------------------------------------------------------- fuzzing
FUZZ_CHILD = """
import importlib.util, json, resource, sys, warnings
warnings.simplefilter("ignore")
resource.setrlimit(resource.RLIMIT_AS, ({mem}, {mem}))
spec = importlib.util.spec_from_file_location("test_fuzz", {path!r})
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
def log(line):
    print(line, file=sys.stderr, flush=True)
n, failures = m.fuzz_for({seconds}, seed={seed}, batch=10, log=log)
print(json.dumps({{"examples": n, "failures": failures, "slowest_s": m.COUNT["slowest_s"],
                  "slowest": m.COUNT["slowest"][:600]}}))
"""


def fuzz_phase(seconds: float, seed: int, memory: int) -> dict:
    """tests/test_fuzz.py's properties for ``seconds`` in a child capped at ``memory`` bytes."""
    code = FUZZ_CHILD.format(mem=memory, path=str(REPO / "tests" / "test_fuzz.py"), seconds=seconds, seed=seed)
    try:
        out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=None, text=True,
                             timeout=seconds + 600, cwd=REPO, check=False)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, IndexError, ValueError) as e:
        log(f"fuzzing gave no result: {e}")
        return {"examples": 0, "failures": [{"property": "?", "error": f"no result: {e}", "example": ""}],
                "slowest_s": math.nan, "slowest": ""}


# ---------------------------------------------------------------------------------------- main
def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="two commands per file, 4 mutants per format, 20 s timeouts, 20 s of fuzzing, smaller API run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cases", type=int, default=None, help="mutants per format (default 40; --quick 4)")
    p.add_argument("--fuzz-seconds", type=float, default=None, help="default 120 (--quick 20)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per CLI case (default 150; --quick 20)")
    p.add_argument("--jobs", type=int, default=2, help="CLI cases at once")
    p.add_argument("--memory-gb", type=float, default=4.0, help="address space of each child (RLIMIT_AS)")
    p.add_argument("--only", default="cli,api,fuzz", help="parts to run: cli, api, fuzz")
    p.add_argument("--fresh", action="store_true", help="a new Python per CLI case (slower; default: forked)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (its path is printed)")
    p.add_argument("--filter", metavar="REGEX", help="run only the CLI cases whose name matches (e.g. 'beats|nan.wav')")
    a = p.parse_args()
    a.cases = a.cases if a.cases is not None else (4 if a.quick else 40)
    a.fuzz_seconds = a.fuzz_seconds if a.fuzz_seconds is not None else (20.0 if a.quick else 120.0)
    # a timeout is for work that does not end: the longest the limits allow ends well inside 150 s on 2 cores
    # (arrange over a 494-bar ABC, 16 minutes of music: 69 s alone, past 60 s beside the other cases)
    a.timeout = a.timeout if a.timeout is not None else (20.0 if a.quick else 150.0)
    a.only = set(a.only.split(","))
    return a


def setup(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="robustness-"))
    log(f"work folder: {work}")
    canary_path, token = rc.canary(work / "canary")
    corpus = rc.build_corpus(work / "corpus", canary_path, args.cases, args.seed)
    seeds = work / "seeds"
    seeds.mkdir()
    (seeds / "seed.mid").write_bytes(rc.seed_midi())
    (seeds / "seed.wav").write_bytes(rc.seed_wav())
    models = rc.build_models(work / "models")
    local = work / "local"
    local.mkdir()
    corpus_dir = work / "corpus"

    def allow_corpus(argv):  # a case whose argv names the corpus folder (train --data) may read it
        return [corpus_dir] if any(str(corpus_dir) in a for a in argv) else []

    return {"work": work, "corpus": str(corpus_dir), "corpus_files": corpus, "tiny": str(models["tiny"]),
            "models": models, "models_root": work / "models", "local": local, "token": token,
            "canary": str(canary_path), "seed_mid": str(seeds / "seed.mid"), "seed_wav": str(seeds / "seed.wav"),
            "seeds": str(seeds), "seeds_dir": [seeds], "allow_corpus": allow_corpus}


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the studio and clean up on a kill
    t0 = time.monotonic()
    ctx = setup(args)
    counts = {"corpus_files": sum(len(v) for v in ctx["corpus_files"].values())}
    outside_total = 0
    try:
        if "cli" in args.only:
            cases = file_cases(ctx["corpus_files"], args.quick)
            cases += model_cases(ctx["models"], ctx["models_root"], args.quick)
            cases += [{"name": n, "category": "params", "argv": a} for n, a in PARAMS]
            # the control: a case told to read the canary, which the audit must see (not counted)
            if args.filter:
                cases = [c for c in cases if re.search(args.filter, c["name"])]
            cases.append({"name": "control: render the canary", "category": "control",
                          "argv": ["render", "{canary}", *OUT]})
            results, zygote = run_cli(cases, ctx, args)
            cli = report_cli(results)
            outside_total += cli["outside"]
            counts.update(cases=sum(cli["figures"].values()), **{k: cli["figures"].get(k, 0) for k in OUTCOMES},
                          peak_rss_mb=cli["rss"], zygote_rss_mb=zygote,
                          cases_over_2gb=sum(r["rss_mb"] > 2048 for r in results), cli_reads_outside=cli["outside"],
                          skipped_after_timeout=cli["skipped"], audit_self_check=cli["audit_works"])
            counts.update({f"cat_{c}_{o}": n for (c, o), n in sorted(cli["cats"].items())})
        if "api" in args.only:
            api = api_phase(ctx, args, log)
            outside_total += api.pop("reads_outside", 0)
            counts["peak_rss_mb"] = max(counts.get("peak_rss_mb", 0.0), api.pop("server_rss_mb", 0.0))
            counts.update(api)
        if "fuzz" in args.only:
            fz = fuzz_phase(args.fuzz_seconds, args.seed, int(args.memory_gb * (1 << 30)))
            for f in fz["failures"]:
                log(f"[fuzz failure] {f['property']}: {f['error'][:300]}\n{f['example'][:1500]}")
            log(f"slowest fuzz call: {fz['slowest_s']:.1f} s: {fz['slowest'][:400]}")
            counts.update(fuzz_examples=fz["examples"], fuzz_failures=len(fz["failures"]),
                          fuzz_slowest_s=fz["slowest_s"])
        counts["files_read_outside"] = outside_total
    finally:
        if args.keep:
            log(f"kept {ctx['work']}")
        else:
            shutil.rmtree(ctx["work"], ignore_errors=True)
    counts["wall_s"] = time.monotonic() - t0
    first = ["cases", *OUTCOMES, "peak_rss_mb", "http_requests", "http_5xx", "health_ms_max_during_heavy",
             "files_read_outside", "fuzz_examples", "fuzz_failures"]
    for name in [*[f for f in first if f in counts], *[f for f in counts if f not in first]]:
        emit(name, counts[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
