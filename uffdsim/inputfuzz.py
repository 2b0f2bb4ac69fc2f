"""A seeded mutation fuzzer over the scenario format and the command line (issue 9: keep it closed).

Each case is a mutated corpus scenario (types, values, huge numbers, unicode, duplicated keys,
truncation, binary junk...), a mutated command line, or a *semantic* scenario: a valid sequence of
mmaps, writes, forks, exits, KSM merges, moves and pins over many processes and regions (children
forked from children, from exited processes, forks that fail), run with ``run`` or drawn with
``draw`` at a random step (issue 19: what found the KeyError of a failed fork, the unbounded
``draw`` and the KSM work).  It runs the real command line in this
process (:func:`uffdsim.cli.main`, stdout and stderr captured) under a time budget, and checks what
the command line promises on any input:

* no traceback: nothing escapes ``main``, and no "internal error" line (``main``'s safety net);
* no hang: the case uses at most its budget of CPU time (``ITIMER_PROF``, so that a loaded
  machine does not turn a slow case into a hang) and at most ten times that of wall time
  (``ITIMER_REAL``: a case blocked without using the CPU);
* no memory runaway: the process's peak RSS stays under a cap;
* the documented exit status: 0 or 1 when accepted (0 for ``draw``), 2 with one ``error:`` line
  for bad input, never 70 (an internal error counts as a traceback);
* untrusted text escaped: no escape character reaches the output.

Deterministic for a seed: ``fuzz(cases, seed)`` replays the same cases.
``benchmarks/fuzz_inputs.py`` runs it long; ``tests/test_input_fuzz.py`` runs a fixed small budget.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import random
import resource
import signal
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from .resources import corpus_files

#: values a mutation puts in place of a field: wrong types, edges, huge numbers, unicode
VALUES: list[Any] = [
    0, 1, -1, -4096, 255, 256, 4095, 4096, 2**32, 2**40, 2**47, 2**52, 2**63, 2**64 - 1, 2**64,
    2**64 - 4096, 10**30, 10**300, 1.5, -0.0, float("inf"), float("nan"),
    None, True, False, "", " ", "src", "dst", "src+1", "src+3+1b", "src+99999999999999999999",
    "0x7fffffffffff", "0xffffffffffffffff", "-0x1000", "nowhere+1", "ünïcødé", "🦀", "a" * 300,
    "\u202e", "\x7f", [], [1, 2], ["2M"], ["missing", "missing"], {}, {"x": 1}, {"a": {"b": [1]}},
    "2M", "4K", "rw", "none", "wx", "dontneed", "EBUSY", "unwritten", "-EAGAIN", "present",
]
JUNK: list[bytes] = [b"\x00", b"\xff\xfe", b"\xe9", b"\xc3", b"\x80\x80", b"\x1b[31m", b"\r",
                     b"\t", b"&a [1]", b"*a", b"!!python/object:os.system", b"<<: {x: 1}",
                     b"{", b"}", b"[", b"- ", b": ", b"? ", b"'", b'"', b"%YAML 1.1\n---\n"]


@dataclass
class Outcome:
    """One case: ``accepted`` (exit 0/1: ran, expectations met or not), ``rejected`` (error line,
    exit 2), or a failure: ``traceback``, ``hang``, ``memory``, ``bad-exit``, ``unescaped``."""

    kind: str
    status: int | None = None
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Summary:
    cases: int = 0
    accepted: int = 0
    rejected: int = 0
    tracebacks: int = 0
    hangs: int = 0
    memory: int = 0
    bad_exits: int = 0
    unescaped: int = 0
    semantic: int = 0             #: cases that were generated scenarios (not mutated corpus files)
    draws: int = 0                #: cases that ran ``draw``
    seconds: float = 0.0
    slowest: float = 0.0
    peak_rss_mb: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__, seconds=round(self.seconds, 1), slowest=round(self.slowest, 2),
                    peak_rss_mb=round(self.peak_rss_mb, 1))

    @property
    def ok(self) -> bool:
        return not (self.tracebacks or self.hangs or self.memory or self.bad_exits or self.unescaped)


#: a case may take this many times its CPU budget in wall time (blocked, or starved on a busy machine)
WALL_FACTOR = 10


class CaseTimeout(BaseException):
    """Raised by the timer inside a case that ran past its budget (BaseException: main cannot swallow it)."""


def rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- mutations ----------------------------------------------------------------------------------

def _value(rng: random.Random) -> Any:
    """A fresh copy of a value from VALUES (a shared list must never end up inside itself)."""
    return copy.deepcopy(rng.choice(VALUES))


def corpus_texts() -> list[str]:
    return [p.read_text() for p in corpus_files()]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if len(prefix) > 20:
        return out
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        node = node[k]
    return node


def mutate_doc(rng: random.Random, doc: Any) -> Any:
    """Structure-aware: replace, delete, add, duplicate or swap something in the loaded document."""
    paths = _paths(doc)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths)
        if not path:
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        what = rng.random()
        try:
            if what < 0.2 and isinstance(parent[key], int) and not isinstance(parent[key], bool):
                parent[key] = rng.choice([0, 1, 2, 3, 7, 255, 511, 512, 513, 4095, 4096]) # plausible, runs
            elif what < 0.3 and isinstance(parent[key], str):
                parent[key] = rng.choice(["src", "dst", "src+1", "dst+1", "src+511", "a", "c", "t1", parent[key]])
            elif what < 0.55:
                parent[key] = _value(rng)
            elif what < 0.65 and isinstance(parent, dict):
                del parent[key]
            elif what < 0.75 and isinstance(parent, dict):
                parent[rng.choice(["proc", "uffd", "mode", "colour", 7, "expect", "pages", "bytes"])] = _value(rng)
            elif what < 0.85 and isinstance(parent, list):
                parent.insert(rng.randrange(len(parent) + 1), parent[key])
            elif isinstance(parent, dict) and isinstance(parent[key], int) and not isinstance(parent[key], bool):
                parent[key] = rng.choice([parent[key] * 2**rng.randint(1, 60), -parent[key], parent[key] + 1])
            else:
                parent[key] = _value(rng)
        except (KeyError, IndexError, TypeError):
            pass
        paths = _paths(doc)
    return doc


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """Textual: truncate, duplicate a line (duplicated keys), insert junk, flip bytes, re-encode."""
    what = rng.random()
    if what < 0.2:
        return data[:rng.randrange(len(data) + 1)]
    if what < 0.4:
        lines = data.split(b"\n")
        i = rng.randrange(len(lines))
        lines.insert(rng.randrange(len(lines) + 1), lines[i])
        return b"\n".join(lines)
    if what < 0.6:
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.choice(JUNK) + data[at:]
    if what < 0.7:
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if what < 0.8:
        return data.decode("utf-8", "replace").encode(rng.choice(["utf-16", "latin-1", "utf-32"]), "replace")
    if what < 0.9:
        depth = rng.choice([50, 1000, 20000])
        return data + b"\nx: " + b"[" * depth + b"]" * depth + b"\n"
    return data.replace(b"pages: ", b"pages: " + rng.choice(["1099511627776", "65536", "9" * 30, "18446744073709551616", "9" * 5000]).encode() + b"#", 1)


def mutated_file(rng: random.Random, texts: list[str]) -> bytes:
    """One mutated scenario file (bytes, since some are not text at all)."""
    text = rng.choice(texts)
    if rng.random() < 0.6:
        doc = mutate_doc(rng, yaml.safe_load(text))
        try:
            text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=200)
        except (yaml.YAMLError, ValueError, RecursionError):
            pass
        data = text.encode("utf-8", "surrogatepass")
        return mutate_bytes(rng, data) if rng.random() < 0.2 else data
    return mutate_bytes(rng, text.encode())


def mutated_argv(rng: random.Random, path: str, out_png: str) -> list[str]:
    """A command line of ``run``, ``draw`` or ``atomicity`` with mutated options."""
    ints = ["0", "1", "-1", "3", "8", "9", "64", "65", "1000000000", "x", "", "1e3", "99999999999999999999999"]
    kind = rng.random()
    if kind < 0.6:
        argv = ["run", path] + rng.choice([[], ["--json"], ["--backend", "sim"], ["--backend", "nope"], [path]])
    elif kind < 0.75:
        argv = ["draw", path, "--step", rng.choice(ints + ["2"]), "-o", rng.choice([out_png, out_png + ".svg", "/nonexistent/x.png"])]
        if rng.random() < 0.2:
            argv += ["--kind", rng.choice(["trail", "pair", "pie"])]
    else:
        argv = ["atomicity", "--strategy", rng.choice(["move", "copy-dontneed", "all", "nope", ""]),
                "--pages", rng.choice(ints[:5]), "--increments", rng.choice(ints[:6])]
        argv += rng.choice([[], ["--json"], ["--trace"], ["--schedule", rng.choice(["AB", "ZZ", "", "A" * 500])],
                            ["--trials", rng.choice(ints)], ["--src-page", "pinned"]])
    if rng.random() < 0.05:
        argv.insert(rng.randrange(len(argv) + 1), rng.choice(["--frob", "-", "--", "\udcff", "🦀"]))
    return argv



# -- semantic scenarios: valid sequences over many processes ------------------------------------

def semantic_scenario(rng: random.Random) -> bytes:
    """A scenario that loads (mostly): regions, writes, forks and exits of many processes, KSM, moves, pins.

    Children fork children and exited processes fork (that fork fails: every later step of that
    child must be ESRCH, not an internal error); now and then a case is large (hundreds of regions
    or forks) to reach the work limit and ``draw``'s bounds.
    """
    big = rng.random() < 0.015
    nreg = rng.randint(50, 320) if big and rng.random() < 0.5 else rng.randint(1, 6)
    nsteps = rng.randint(300, 990) if big else rng.randint(3, 60)
    lines = ["name: generated", "about: generated by uffdsim.inputfuzz", "steps:"]
    regions: list[tuple[str, int]] = []
    procs, alive = ["main"], {"main"}
    uffd = False
    for i in range(nreg):
        pages = rng.choice([1, 1, 2, 4, 8, 512]) if not big else 1
        extra = ", align: 2M" if pages == 512 and rng.random() < 0.5 else ""
        lines.append(f"  - mmap: {{name: r{i}, pages: {pages}{extra}}}")
        regions.append((f"r{i}", pages))
    forks = 0

    def at(pages_max: int = 4) -> str:
        name, size = rng.choice(regions)
        off = rng.randrange(size)
        return f"at: {name}+{off}, pages: {rng.randint(1, min(pages_max, size - off))}"

    while len(lines) - 3 < nreg + nsteps:
        proc = rng.choice(procs) if rng.random() < 0.4 else "main"
        p = "" if proc == "main" else f", proc: {proc}"
        what = rng.random()
        if big and rng.random() < 0.7:
            forks += 1
            lines.append(f"  - fork: {{child: c{forks}{p}}}")
            procs.append(f"c{forks}")
        elif what < 0.25:
            step = f", value_step: {rng.randint(0, 255)}" if rng.random() < 0.2 else ""
            lines.append(f"  - write: {{{at()}, value: {rng.randint(0, 255)}{step}{p}}}")
        elif what < 0.4:
            forks += 1
            lines.append(f"  - fork: {{child: c{forks}{p}}}")
            procs.append(f"c{forks}")
            if proc in alive:
                alive.add(f"c{forks}")
        elif what < 0.5:
            victim = rng.choice(procs[1:]) if len(procs) > 1 and rng.random() < 0.95 else rng.choice(procs)
            lines.append(f"  - exit: {{proc: {victim}}}")
            alive.discard(victim)
        elif what < 0.58:
            lines.append(f"  - madvise: {{{at(8)}, advice: {rng.choice(['mergeable', 'mergeable', 'dontneed', 'pageout', 'unmergeable', 'dontfork', 'wipeonfork'])}{p}}}")
        elif what < 0.66:
            lines.append("  - ksm_merge: {}" if not p else f"  - ksm_merge: {{{p[2:]}}}")
        elif what < 0.78:
            if not uffd:
                lines.append("  - uffd: {features: [move]}")
                uffd = True
            dst, src = rng.choice(regions), rng.choice(regions)
            n = rng.randint(1, min(dst[1], src[1]))
            mode = ", mode: [allow_src_holes]" if rng.random() < 0.3 else ""
            lines.append(f"  - register: {{at: {dst[0]}, pages: {dst[1]}, mode: [missing]}}")
            lines.append(f"  - move: {{dst: {dst[0]}, src: {src[0]}, pages: {n}{mode}}}")
        elif what < 0.84:
            lines.append(f"  - pin: {{{at()}, name: p{len(lines)}{p}}}")
        elif what < 0.9:
            lines.append(f"  - munmap: {{{at(8)}{p}}}")
        elif what < 0.95:
            lines.append(f"  - observe: {{{at(16)}{p}}}")
        else:
            lines.append(f"  - read: {{{at()}{p}}}")
        if rng.random() < 0.1:
            lines.append(f"    expect: {{errno: {rng.choice(['ESRCH', 'EBUSY', 'EFAULT'])}}}")
        elif rng.random() < 0.03:       # untrusted text that must come back escaped
            lines.append("    expect: {trail: \"x\\e[2J\\nTraceback (most recent call last)\"}")
    return ("\n".join(lines) + "\n").encode()


def semantic_argv(rng: random.Random, path: str, out_png: str, data: bytes) -> list[str]:
    """``run`` (sometimes with --json) or ``draw`` at a random step of a generated scenario."""
    if rng.random() < 0.06:                       # a drawing costs about a second: fewer of them
        steps = max(1, data.count(b"\n  - "))
        argv = ["draw", path, "--step", str(rng.randrange(steps)), "-o", out_png]
        return argv + (["--kind", "trail"] if rng.random() < 0.2 else [])
    return ["run", path] + (["--json"] if rng.random() < 0.2 else [])


# -- running a case ------------------------------------------------------------------------------

def run_cli(argv: list[str], budget: float) -> Outcome:
    """Run ``python -m uffdsim ARGV`` in this process and classify what happened."""
    from .cli import main
    out, err = io.StringIO(), io.StringIO()

    def alarm(signum: int, frame: Any) -> None:
        raise CaseTimeout()

    old = signal.signal(signal.SIGALRM, alarm)
    old_prof = signal.signal(signal.SIGPROF, alarm)
    signal.setitimer(signal.ITIMER_REAL, WALL_FACTOR * budget)
    signal.setitimer(signal.ITIMER_PROF, budget)
    c0 = time.process_time()
    t0 = time.perf_counter()
    status: int | None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(argv)
            except SystemExit as stop:           # argparse: usage error
                status = stop.code if isinstance(stop.code, int) else 2
    except CaseTimeout:
        return Outcome("hang", None, f"past {budget} s of CPU ({time.process_time() - c0:.1f} s) or "
                                     f"{WALL_FACTOR * budget} s of wall time", time.perf_counter() - t0)
    except MemoryError:
        return Outcome("memory", None, "MemoryError", time.perf_counter() - t0)
    except BaseException as exc:                 # what escaped main: a traceback on the terminal
        return Outcome("traceback", None, f"{type(exc).__name__}: {exc}"[:300], time.perf_counter() - t0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGALRM, old)
        signal.signal(signal.SIGPROF, old_prof)
    seconds = time.perf_counter() - t0
    text = err.getvalue()
    if "Traceback" in text or "internal error" in text:
        return Outcome("traceback", status, text.strip()[:300], seconds)
    if status == 70:
        return Outcome("traceback", status, text.strip()[:300], seconds)
    if "\x1b" in text or "\x1b" in out.getvalue():
        return Outcome("unescaped", status, "an escape character reached the output", seconds)
    errors = [line for line in text.splitlines() if line.startswith("error:") or ": error: " in line]
    if errors:
        if status != 2:
            return Outcome("bad-exit", status, f"rejected but exit {status}: {errors[0][:200]}", seconds)
        if len(errors) > 1 and argv[:1] != ["run"]:     # run says one line per rejected file
            return Outcome("bad-exit", status, f"{len(errors)} error lines: {errors[1][:200]}", seconds)
        return Outcome("rejected", status, errors[0][:200], seconds)
    if status not in ((0,) if argv[:1] == ["draw"] else (0, 1)):
        return Outcome("bad-exit", status, f"exit {status} without an error line", seconds)
    return Outcome("accepted", status, "", seconds)


def fuzz(cases: int, seed: int = 0, budget: float = 20.0, mem_cap_mb: float = 2048.0,
         seconds: float | None = None, argv_share: float = 0.15, semantic_share: float = 0.3,
         progress: Callable[[Summary], None] | None = None) -> Summary:
    """Run ``cases`` cases (or until ``seconds`` have passed); a failure is kept with its input."""
    rng = random.Random(seed)
    texts = corpus_texts()
    summary = Summary()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"uffdsim-fuzz-{os.getpid()}-") as tmp:   # pid: whose it is
        path, png = os.path.join(tmp, "case.yaml"), os.path.join(tmp, "case.png")
        for n in range(cases):
            if seconds is not None and time.perf_counter() - t0 > seconds:
                break
            semantic = rng.random() < semantic_share
            data = semantic_scenario(rng) if semantic else mutated_file(rng, texts)
            with open(path, "wb") as f:
                f.write(data)
            if semantic:
                argv = semantic_argv(rng, path, png, data)
            else:
                argv = mutated_argv(rng, path, png) if rng.random() < argv_share else ["run", path]
            summary.semantic += semantic
            summary.draws += argv[0] == "draw"
            o = run_cli(argv, budget)
            summary.cases += 1
            summary.slowest = max(summary.slowest, o.seconds)
            summary.peak_rss_mb = rss_mb()
            if summary.peak_rss_mb > mem_cap_mb and o.kind in ("accepted", "rejected"):
                o = Outcome("memory", o.status, f"peak RSS {summary.peak_rss_mb:.0f} MiB > {mem_cap_mb:.0f}", o.seconds)
            kind = {"traceback": "tracebacks", "hang": "hangs", "memory": "memory", "bad-exit": "bad_exits",
                    "unescaped": "unescaped"}.get(o.kind, o.kind)
            setattr(summary, kind, getattr(summary, kind) + 1)
            if o.kind not in ("accepted", "rejected") and len(summary.failures) < 20:
                summary.failures.append({"case": n, "kind": o.kind, "argv": argv, "detail": o.detail,
                                         "input": data[:2000].decode("utf-8", "backslashreplace")})
            if progress is not None and summary.cases % 500 == 0:
                progress(summary)
    summary.seconds = time.perf_counter() - t0
    return summary
