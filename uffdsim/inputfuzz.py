"""A seeded mutation fuzzer over the scenario format and the command line (issue 9: keep it closed).

Each case is a mutated corpus scenario (types, values, huge numbers, unicode, duplicated keys,
truncation, binary junk...), a mutated command line, or a *semantic* scenario: a valid sequence of
mmaps, writes, forks, exits, KSM merges, moves and pins over many processes and regions (children
forked from children, from exited processes, forks that fail), run with ``run`` or drawn with
``draw`` at a random step (issue 19: what found the KeyError of a failed fork, the unbounded
``draw`` and the KSM work).  Two more generators feed what else found bugs in issue 19: a *claims
page* (:func:`claims_page`: a Markdown/MyST page or a notebook with unclosed fences, deep nesting,
thousands of citations in a paragraph, malformed cells, huge sizes, odd encodings; or a directory,
a device, a FIFO: :func:`claims_argv`) given to ``claims``, and a *live cell* (:func:`live_cell`:
a generated scenario, or a hostile Python snippet: huge output, ``exit()``, interrupts, limits
changed, big work) run as the book's page runs it (:func:`run_live`, ``uffdsim.live.run_cell_json``),
which must answer with its output or one ``error:`` line, never raise, and leave the next cell
nothing changed.  It runs the real command line in this
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
    claims: int = 0               #: cases that ran ``claims`` on a generated page (or an odd file)
    live: int = 0                 #: cases that ran a live cell (``uffdsim.live.run_cell_json``)
    #: per generator, the outcomes: ok (exit 0), expectation-failed (exit 1: ran, an expectation or a
    #: citation failed), rejected (one ``error:`` line, exit 2), and the failures by kind
    generators: dict[str, dict[str, int]] = field(default_factory=dict)
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


def memory_verdict(peak_before: float, peak_after: float, cap: float) -> str | None:
    """Whether one case ran away with memory: it raised the process's peak RSS (MiB) above ``cap``.

    The peak only grows, so a case that stays below an earlier case's peak is not blamed for it:
    only the case that pushed the peak over the cap, or higher while over it, is."""
    if peak_after > cap and peak_after > peak_before:
        return f"peak RSS {peak_before:.0f} -> {peak_after:.0f} MiB (> {cap:.0f})"
    return None


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


# -- claims pages: generated Markdown/MyST pages and notebooks ----------------------------------

#: targets a citation names: corpus scenarios (some with a step) and names that are not
_CLAIM_TARGETS = ["move-after-fork", "move-after-fork#0", "move-after-fork#1", "move-after-fork#99999999999999999999",
                  "move-after-fork#-1", "move-after-fork#no-such-step", "no-such-scenario", "", "#", "#0", "a#b#c",
                  "ünïcødé", "🦀", "x\x1b[2Jy", "x\\e[2J", "../../etc/passwd", "a" * 5000, "move after fork",
                  "move-after-fork\u202e"]


def _cite(rng: random.Random, names: list[str]) -> str:
    target = rng.choice(names) if names and rng.random() < 0.6 else rng.choice(_CLAIM_TARGETS)
    if rng.random() < 0.2 and "#" not in target:
        target += f"#{rng.choice(['0', '1', '2', '5', 'x'])}"
    return rng.choice(["{claim}`%s`", "{claim}`%s`", "{claim}``%s``", "{claim} `%s`", "{claim}`%s", "{claim}`%s``",
                       "`{claim}`%s``", "{claim}`%s`{claim}`%s`", "[{claim}`%s`](x)"]).replace("%s", target)


def _paragraph(rng: random.Random, names: list[str], cites: int) -> str:
    words = ["Moving", "a", "page", "keeps", "its", "folio.", "See", "the", "fork;", "\u00e9t\u00e9", "\t", "*em*", "**b**"]
    return " ".join(rng.choice(words) if rng.random() < 0.6 else _cite(rng, names) for _ in range(max(1, cites * 2)))


def markdown_page(rng: random.Random, names: list[str]) -> str:
    """A Markdown/MyST page: prose with citations, and now and then a hostile structure
    (unclosed or nested fences, deep nesting, a paragraph of many citations, a huge page)."""
    parts = ["# A page\n"]
    for _ in range(rng.randint(1, 6)):
        if sum(map(len, parts)) > PAGE_PART_MAX:      # the generator's own memory: see PAGE_PART_MAX
            break
        what = rng.random()
        if what < 0.3:
            parts.append(_paragraph(rng, names, rng.randint(1, 6)))
        elif what < 0.4:                                   # many citations in one paragraph
            parts.append(" ".join(_cite(rng, names) for _ in range(rng.choice([50, 300, 2000, 20000]))))
        elif what < 0.5:                                   # unclosed fences (the quadratic case)
            fence = rng.choice(["```", "~~~", ":::", "````{note}", "```{code-cell}", "```{admonition} x"])
            parts.append((fence + "\n" + _paragraph(rng, names, 1) + "\n") * rng.choice([1, 10, 500, 5000]))
        elif what < 0.6:                                   # directives nested deep (MyST parses their bodies)
            depth = rng.choice([3, 15, 17, 40, 300])
            colon = rng.random() < 0.5
            opens = [(":" * (depth + 3 - i) + "{note}") if colon else ("`" * (depth + 3 - i) + "{note}")
                     for i in range(depth)]
            closes = [(":" * (i + 4)) if colon else ("`" * (i + 4)) for i in range(depth)]
            parts.append("\n".join(opens) + "\n" + _paragraph(rng, names, 2) + "\n" + "\n".join(closes))
        elif what < 0.68:                                  # block quotes and lists nested deep
            depth = rng.choice([10, 100, 1000, 10000])
            parts.append(rng.choice([">" * depth + " ", "".join("  " * i + "- " for i in range(min(depth, 300)))])
                         + _paragraph(rng, names, 2))
        elif what < 0.74:                                  # glossary, dropdown, table, footnote, link refs
            c = _cite(rng, names)
            parts.append(rng.choice([f"```{{glossary}}\nterm\n  {c}\n```", f":::{{dropdown}} t\n{c}\n:::",
                                     f"| a | b |\n|---|---|\n| {c} | x |", f"x[^1]\n\n[^1]: {c}",
                                     "".join(f"[r{i}]: http://x/{i}\n" for i in range(rng.choice([10, 3000]))),
                                     f"<div>\n{c}\n</div>", f"$$\n{c}\n$$", f"<!-- {c} -->"]))
        elif what < 0.8:                                   # a huge page (over the Markdown limit, or near it)
            parts.append((_paragraph(rng, names, 1) + "\n\n") * rng.choice([100, 3000, 20000]))
        elif what < 0.9:                                   # control characters, odd line ends
            parts.append(rng.choice(["\r\n", "\r", "\x0b", "\x0c", "\x1b[2J", "\x7f", "\u2028", "\ufeff", "\x85"]).join(
                _paragraph(rng, names, 1) for _ in range(3)))
        else:
            parts.append(_paragraph(rng, names, 1) + "\n" + rng.choice(["```", "`", "{claim}", "{claim}`", "::: ", "---"]))
    return "\n\n".join(part[:PAGE_PART_MAX] for part in parts) + "\n"


#: characters of one generated part of a page (a page stops growing past it: at most twice this,
#: before ``claims_page`` pads some past the 16 MiB limit): a page of 20,000 long paragraphs was 104 MB,
#: and building it took the fuzzer (not ``claims``, which read 16 MiB and refused it) past 1 GiB
PAGE_PART_MAX = 2 << 20


def notebook_page(rng: random.Random, names: list[str]) -> bytes:
    """A notebook: well formed with generated Markdown cells, or malformed (``cells`` not a list, a
    cell not a mapping, a non-text ``source``, deep nesting, too many cells, not JSON at all)."""
    import json
    what = rng.random()
    cells: Any
    if what < 0.5:
        cells = []
        for _ in range(rng.randint(0, 5)):
            text = markdown_page(rng, names) if rng.random() < 0.3 else _paragraph(rng, names, rng.randint(1, 4))
            src: Any = text.splitlines(keepends=True) if rng.random() < 0.5 else text
            cells.append({"cell_type": rng.choice(["markdown", "markdown", "code", "raw"]), "metadata": {}, "source": src})
    elif what < 0.62:
        cells = rng.choice([{}, {"0": {"cell_type": "markdown", "source": "x"}}, 5, "cells", None, True, 1.5])
    elif what < 0.74:
        cells = [rng.choice([5, "markdown", None, [], [{"cell_type": "markdown"}], 1e308])]
    elif what < 0.86:
        cells = [{"cell_type": "markdown", "source": rng.choice([5, None, {"a": 1}, [1, 2], ["a", 3], [["x"]], 1e400 if False else -1, True])}]
    elif what < 0.9:
        cells = [{"cell_type": "markdown", "source": "x"}] * rng.choice([10_001, 100_001])
    else:
        depth = rng.choice([100, 1000, 100_000])
        return (b'{"cells": ' + b"[" * depth + b"]" * depth + b"}") if rng.random() < 0.7 else \
            rng.choice([b"", b"{", b"[]", b"null", b'"x"', b"\xff\xfe{}", b'{"cells": [}', b"{" * 50_000])
    doc: Any = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    if rng.random() < 0.05:
        doc = [doc]
    return json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


def claims_page(rng: random.Random, names: list[str]) -> tuple[bytes, str]:
    """A page for ``claims``: (its bytes, its suffix); now and then in another encoding or with junk bytes."""
    if rng.random() < 0.35:
        data, suffix = notebook_page(rng, names), ".ipynb"
    else:
        data, suffix = markdown_page(rng, names).encode("utf-8", "surrogatepass"), ".md"
    what = rng.random()
    if what < 0.04:
        data = data.decode("utf-8", "replace").encode(rng.choice(["utf-16", "utf-32", "latin-1", "cp1252"]), "replace")
    elif what < 0.08:
        at = rng.randrange(len(data) + 1)
        data = data[:at] + rng.choice([b"\x00", b"\xff", b"\xed\xa0\x80", b"\xc3", b"\xef\xbb\xbf"]) + data[at:]
    elif what < 0.1:
        data = data[:rng.randrange(len(data) + 1)]
    elif what < 0.102:                                       # past the 16 MiB page limit
        data = data + b" " * (17 << 20)
    return data, suffix


def claims_argv(rng: random.Random, path: str, tmp: str) -> list[str]:
    """``claims`` of the generated page, or of a directory, a device, a FIFO, a missing file."""
    what = rng.random()
    if what < 0.9:
        files = [path]
    else:
        files = [rng.choice([tmp, "/dev/zero", "/dev/null", os.path.join(tmp, "fifo"), os.path.join(tmp, "loop"),
                             os.path.join(tmp, "missing.md"), "", "-", "/proc/self/mem", path + "/x"])]
    argv = ["claims"] + files
    if rng.random() < 0.2:
        argv.append("--json")
    if rng.random() < 0.1:
        argv += ["--root", rng.choice([tmp, "/nonexistent", "/dev/zero", path])]
    if rng.random() < 0.05:
        argv += ["--record", rng.choice([path, "/dev/zero", tmp, "/nonexistent"])]
    return argv


def claims_fixtures(tmp: str) -> None:
    """The odd files ``claims_argv`` may name: a FIFO and a symlink loop."""
    with contextlib.suppress(OSError):
        os.mkfifo(os.path.join(tmp, "fifo"))
    with contextlib.suppress(OSError):
        os.symlink("loop", os.path.join(tmp, "loop"))


# -- live cells: what the book's live cells run (uffdsim.live.run_cell_json) ---------------------

#: hostile Python snippets, each bounded by the simulator's limits or by its own size (an endless
#: loop of the reader's own is the page's to stop: the Web Worker's time limit, tested in the browser;
#: so is a loop of many thousands of mmaps, which the simulator's Python API serves in quadratic time:
#: 30,000 take minutes natively, so the generator maps at most 2,000 VMAs)
_SNIPPETS: list[str] = [
    "print('x' * {big})",
    "for i in range({n}):\n    print(i, 'a' * 50)",
    "import sys\nsys.stdout.write('y' * {big})\nsys.stderr.write('z' * {big})",
    "import sys\nsys.stdout.write(b'bytes')",
    "print('\\x1b[2J' * 10, end='')",
    "raise SystemExit",
    "raise SystemExit({code})",
    "raise SystemExit('bye' * {n})",
    "exit()",
    "quit(7)",
    "import sys\nsys.exit('a\\nb\\x1b[2J')",
    "raise KeyboardInterrupt",
    "raise GeneratorExit",
    "raise MemoryError",
    "raise RecursionError",
    "x = [0] * 10**10",
    "x = bytearray(2**40)",
    "def f():\n    return f()\nf()",
    "eval('(' * 200000)",
    "class E(Exception):\n    def __str__(self):\n        raise RuntimeError('str failed')\nraise E()",
    "class E(Exception):\n    def __str__(self):\n        raise SystemExit(4)\nraise E()",
    "class E(BaseException):\n    def __str__(self):\n        return 5\nraise E()",
    "class E(Exception):\n    def __str__(self):\n        return 'e' * {big}\nraise E()",
    "class X(SystemExit):\n    @property\n    def code(self):\n        raise ValueError('code')\nraise X()",
    "uffdsim.scenario.MAX_STEPS = 10**9\nimport uffdsim.live\nuffdsim.live.MAX_OUTPUT = 10**12\nuffdsim.live.MAX_SOURCE = 10**12",
    "import uffdsim.scenario\ndel uffdsim.scenario.MAX_STEPS",
    "import uffdsim.live\nuffdsim.live.cap_text = None\nuffdsim.live.CappedText = None",
    "import uffdsim.live\nuffdsim.live.address_space_svg = None\nmachine = uffdsim.Machine()",
    "uffdsim.Machine = None\nuffdsim.errno_name = print",
    "import uffdsim.viz.svg\nuffdsim.viz.svg.address_space_svg = lambda *a, **k: 1 / 0\nmachine = uffdsim.Machine()",
    "import uffdsim.live\nprint(uffdsim.live.run_cell('python', 'raise SystemExit(9)'))",
    "import uffdsim.live\nprint(len(uffdsim.live.run_cell('yaml', 'name: x\\nsteps:\\n' + '  - mmap: {{name: r, pages: 1}}\\n' * {n})['text']))",
    "import uffdsim.scenario as S\nS.loads_scenario('name: x\\nsteps:\\n' + '  - mmap: {{name: r, pages: 1}}\\n' * {steps})",
    "machine = uffdsim.Machine()\np = machine.spawn('main')\nfor i in range({vmas}):\n    a = p.mmap({pages})\n    p.write(a, 4096, i % 256)",
    "machine = uffdsim.Machine()\np = machine.spawn('main')\na = p.mmap({pages})\np.write(a, {pages} * 4096, 1)\n"
    "kids = [p.fork(f'c{{i}}') for i in range({forks})]\nfor k in kids[::2]:\n    k.exit()\nprint(p.ksm_merge())",
    "machine = uffdsim.Machine()\np = machine.spawn('main')\np.mmap({huge})",
    "machine = uffdsim.Machine()\np = machine.spawn('main')\na = p.mmap(2)\np.write(a, {huge} * 4096, 1)",
    "machine = uffdsim.Machine()\nmachine.procs = None",
    "machine = uffdsim.Machine()\nmachine.__dict__.clear()",
    "machine = 5",
    "uffdsim.MachineConfig(thp='bogus')",
    "uffdsim.Machine(kernel={kernel})",
    "uffdsim.errno_value('EFOO')",
    "print(uffdsim.move_range)\nuffdsim.move_range(None, None, 0, 0, 1, page_size={page})",
    "def f(:\n    pass",
    "x = 1\x00",
    "\ufeffprint('bom')",
    "import uffdsim.live\nuffdsim.live._MISSING = None",
    "globals().clear()",
    "__builtins__['print'] = None",
    "__builtins__['print'] = None\n1 / 0",
    "import builtins\nbuiltins.len = None\nbuiltins.isinstance = None\nraise ValueError('x')",
    "import builtins\nbuiltins.print = builtins.print",
]


def live_cell(rng: random.Random, texts: list[str]) -> tuple[Any, Any]:
    """A live cell: (kind, source).  YAML cells are generated or mutated scenarios (big ones too);
    Python cells are hostile snippets (huge output, exits and interrupts, limits changed, big work)."""
    what = rng.random()
    if what < 0.02:
        return rng.choice(["", "YAML", "js", None, 5]), "print(1)"
    if what < 0.04:
        return rng.choice(["yaml", "python"]), rng.choice([None, 5, b"print(1)", ["x"], "x" * 20_001])
    if what < 0.45:
        data = semantic_scenario(rng) if rng.random() < 0.6 else mutated_file(rng, texts)
        return "yaml", data.decode("utf-8", "replace")
    snippet = rng.choice(_SNIPPETS)
    fill = {"big": rng.choice([10, 70_000, 10**6, 10**7]), "n": rng.choice([1, 100, 3000, 30_000]),
            "code": rng.choice([0, 1, 3, -1, 2**70, "None", "'x'", "[1]"]), "steps": rng.choice([10, 2000, 20_000]),
            "pages": rng.choice([1, 8, 512, 1024]), "vmas": rng.choice([1, 100, 1000, 2000]), "forks": rng.choice([1, 20, 200]),
            "huge": rng.choice([2**20, 2**36, 2**52, 2**64, -1, 0]), "kernel": rng.choice(["6.10", "'6.10'", "'9.9'", "None", "[]"]),
            "page": rng.choice([0, -4096, 4096, 1, 2**64])}
    return "python", snippet.format(**fill)


def _live_limits() -> dict[str, Any]:
    """The module-level names a cell may rebind, as the next cell must find them."""
    import sys
    return {f"{m}.{k}": vars(sys.modules[m]).get(k, _GONE) for m, keys in
            (("uffdsim", ("Machine", "errno_name", "move_range")), ("uffdsim.scenario", ("MAX_STEPS", "loads_scenario")),
             ("uffdsim.live", ("MAX_OUTPUT", "MAX_SOURCE", "cap_text", "CappedText", "address_space_svg", "_MISSING")),
             ("uffdsim.viz.svg", ("address_space_svg",)))
            for k in keys if m in sys.modules}


_GONE = object()


def _arm(budget: float, alarm: Any) -> tuple[Any, Any]:
    """Call ``alarm`` after ``budget`` s of CPU or WALL_FACTOR times that of wall time; the old handlers."""
    old = signal.signal(signal.SIGALRM, alarm), signal.signal(signal.SIGPROF, alarm)
    signal.setitimer(signal.ITIMER_REAL, WALL_FACTOR * budget)
    signal.setitimer(signal.ITIMER_PROF, budget)
    return old


def _disarm(old: tuple[Any, Any]) -> None:
    """Stop both timers and put the handlers :func:`_arm` replaced back."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.setitimer(signal.ITIMER_PROF, 0)
    signal.signal(signal.SIGALRM, old[0])
    signal.signal(signal.SIGPROF, old[1])


def run_live(kind: Any, source: Any, budget: float) -> Outcome:
    """Run one live cell as the page does (``run_cell_json``) and classify what came back: ``accepted``
    (ran; ``status`` 0, or 1 for a table with a failed expectation), ``rejected`` (one ``error:`` line),
    or a failure: ``traceback`` (something escaped, or our internal error), ``hang``, ``memory``, or
    ``bad-exit`` (the answer is not what the page reads: malformed, output not capped, no error line
    on a failure, a limit left changed for the next cell)."""
    import builtins
    import json
    import uffdsim.live as live
    before = _live_limits()
    saved_builtins = dict(vars(builtins))
    fired: list[bool] = []

    def alarm(signum: int, frame: Any) -> None:
        fired.append(True)              # run_cell_json catches BaseException: the flag tells
        raise CaseTimeout()

    saved = _arm(budget, alarm)
    c0 = time.process_time()
    t0 = time.perf_counter()
    try:
        answer = live.run_cell_json(kind, source)
    except CaseTimeout:
        return Outcome("hang", None, f"past {budget} s of CPU ({time.process_time() - c0:.1f} s) or "
                                     f"{WALL_FACTOR * budget} s of wall time", time.perf_counter() - t0)
    except MemoryError:
        return Outcome("memory", None, "MemoryError escaped run_cell_json", time.perf_counter() - t0)
    except BaseException as exc:                 # noqa: BLE001 (what escaped: the page's worker dies)
        return Outcome("traceback", None, f"{type(exc).__name__} escaped run_cell_json: {exc}"[:300],
                       time.perf_counter() - t0)
    finally:
        _disarm(saved)
        changed_builtins = [k for k, v in saved_builtins.items() if vars(builtins).get(k, _GONE) is not v]
        vars(builtins).update(saved_builtins)        # the fuzzer's own interpreter, whatever the cell did
    seconds = time.perf_counter() - t0
    if fired:
        return Outcome("hang", None, f"past {budget} s of CPU ({time.process_time() - c0:.1f} s) or "
                                     f"{WALL_FACTOR * budget} s of wall time", seconds)
    after = _live_limits()
    leaked = [k for k in before if after.get(k, _GONE) is not before[k]]
    if leaked:
        import importlib
        import sys
        for key in leaked:                          # put it back, so that one leak is counted once
            mod, _, name = key.rpartition(".")
            if before[key] is _GONE:
                vars(sys.modules[mod]).pop(name, None)
            else:
                setattr(importlib.import_module(mod), name, before[key])
        return Outcome("bad-exit", None, f"a limit or name left changed for the next cell: {', '.join(leaked)}", seconds)
    try:
        doc = json.loads(answer)
        text, ok = doc["text"], doc["ok"]
        assert isinstance(text, str) and isinstance(ok, bool) and set(doc) == {"ok", "text", "svg", "svg_sha256"}
    except (ValueError, KeyError, TypeError, AssertionError):
        return Outcome("bad-exit", None, f"not the answer the page reads: {answer[:200]!r}", seconds)
    if "internal error" in text or any(line.startswith("Traceback (most recent call last)") for line in text.splitlines()):
        return Outcome("traceback", None, text.strip()[-300:], seconds)
    if len(text) > live.MAX_OUTPUT + 200:
        return Outcome("bad-exit", None, f"output not capped: {len(text)} characters", seconds)
    if kind == "yaml" and "\x1b" in text:
        return Outcome("unescaped", None, "an escape character reached a scenario cell's output", seconds)
    if changed_builtins:
        return Outcome("bad-exit", None, f"builtins changed: {changed_builtins[:5]}", seconds)
    if ok:
        return Outcome("accepted", 0, "", seconds)
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    if kind == "yaml" and not errors and "step" in text:      # the table of a failed expectation
        return Outcome("accepted", 1, "", seconds)
    if not errors:
        return Outcome("bad-exit", None, f"not ok, but no error line: {text[-200:]!r}", seconds)
    if kind == "yaml" and len(errors) > 1:
        return Outcome("bad-exit", None, f"{len(errors)} error lines: {errors[1][:200]}", seconds)
    return Outcome("rejected", 2, errors[-1][:200], seconds)


# -- running a case ------------------------------------------------------------------------------

def run_cli(argv: list[str], budget: float) -> Outcome:
    """Run ``python -m uffdsim ARGV`` in this process and classify what happened."""
    from .cli import main
    out, err = io.StringIO(), io.StringIO()

    def alarm(signum: int, frame: Any) -> None:
        raise CaseTimeout()

    saved = _arm(budget, alarm)
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
        _disarm(saved)
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


def _generated(rng: random.Random, texts: list[str], names: list[str], tmp: str, path: str, png: str,
               semantic_share: float, claims_share: float, live_share: float,
               argv_share: float) -> tuple[str, bytes, str | None, Any]:
    """One case: (its generator, its bytes, the file they go to (None: a live cell), an argv or a
    live cell's (kind, source))."""
    u = rng.random()
    if u < semantic_share:
        data = semantic_scenario(rng)
        argv = semantic_argv(rng, path, png, data)
        return ("semantic-draw" if argv[0] == "draw" else "semantic-run"), data, path, argv
    if u < semantic_share + claims_share:
        data, suffix = claims_page(rng, names)
        page = os.path.join(tmp, "page" + suffix)
        return "claims-page", data, page, claims_argv(rng, page, tmp)
    if u < semantic_share + claims_share + live_share:
        kind, source = live_cell(rng, texts)
        data = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else repr(source).encode()
        return f"live-{kind if kind in ('yaml', 'python') else 'kind'}", data, None, (kind, source)
    data = mutated_file(rng, texts)
    if rng.random() < argv_share:
        return "mutated-argv", data, path, mutated_argv(rng, path, png)
    return "mutated-file", data, path, ["run", path]


def fuzz(cases: int, seed: int = 0, budget: float = 20.0, mem_cap_mb: float = 2048.0,
         seconds: float | None = None, argv_share: float = 0.15, semantic_share: float = 0.3,
         claims_share: float = 0.0, live_share: float = 0.0,
         progress: Callable[[Summary], None] | None = None) -> Summary:
    """Run ``cases`` cases (or until ``seconds`` have passed); a failure is kept with its input.

    A case is a generated scenario (``semantic_share``), a ``claims`` page (``claims_share``), a live
    cell (``live_share``), or else a mutated corpus file or command line."""
    rng = random.Random(seed)
    texts = corpus_texts()
    names = sorted(p.stem for p in corpus_files())
    summary = Summary(peak_rss_mb=rss_mb())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"uffdsim-fuzz-{os.getpid()}-") as tmp:   # pid: whose it is
        path, png = os.path.join(tmp, "case.yaml"), os.path.join(tmp, "case.png")
        claims_fixtures(tmp)
        for n in range(cases):
            if seconds is not None and time.perf_counter() - t0 > seconds:
                break
            gen, data, target, what = _generated(rng, texts, names, tmp, path, png, semantic_share, claims_share,
                                         live_share, argv_share)
            if target is None:
                summary.live += 1
                o = run_live(what[0], what[1], budget)
                argv: Any = ["live", what[0]]
            else:
                with open(target, "wb") as f:
                    f.write(data)
                argv = what
                summary.semantic += gen.startswith("semantic")
                summary.claims += gen == "claims-page"
                summary.draws += argv[0] == "draw"
                o = run_cli(argv, budget)
                if gen == "claims-page":
                    os.unlink(target)
            summary.cases += 1
            summary.slowest = max(summary.slowest, o.seconds)
            peak_before, summary.peak_rss_mb = summary.peak_rss_mb, rss_mb()
            grew = memory_verdict(peak_before, summary.peak_rss_mb, mem_cap_mb)
            if grew and o.kind in ("accepted", "rejected"):
                o = Outcome("memory", o.status, grew, o.seconds)
            kind = {"traceback": "tracebacks", "hang": "hangs", "memory": "memory", "bad-exit": "bad_exits",
                    "unescaped": "unescaped"}.get(o.kind, o.kind)
            setattr(summary, kind, getattr(summary, kind) + 1)
            label = {"accepted": "ok" if o.status == 0 else "expectation-failed"}.get(o.kind, o.kind)
            per = summary.generators.setdefault(gen, {"cases": 0})
            per["cases"] += 1
            per[label] = per.get(label, 0) + 1
            if o.kind not in ("accepted", "rejected") and len(summary.failures) < 20:
                summary.failures.append({"case": n, "generator": gen, "kind": o.kind, "argv": argv, "detail": o.detail,
                                         "input": data[:2000].decode("utf-8", "backslashreplace")})
            if progress is not None and summary.cases % 500 == 0:
                progress(summary)
    summary.seconds = time.perf_counter() - t0
    return summary
