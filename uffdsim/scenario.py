"""The scenario format (a public contract, see the book's appendix): load, validate, resolve addresses.

A malformed file raises :class:`ScenarioError` with a one-line message naming the file, the
step and the field.  Nothing here knows how a scenario is executed.
"""
from __future__ import annotations

import os
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .boundedread import read_at_most
from .errors import ERRNO_VALUES
from .textsafe import clean
from .mm.folio import TASK_SIZE

PAGE = 4096
NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
REGION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ADDR_RE = re.compile(r"^(?P<region>[A-Za-z_][A-Za-z0-9_]*)(?:\+(?P<page>[0-9]+)(?!b))?(?:\+(?P<byte>[0-9]+)b)?$")

PROTS = ("rw", "r", "rwx", "none")
ADVICES = ("dontneed", "free", "dontfork", "dofork", "wipeonfork", "keeponfork", "mergeable",
           "unmergeable", "hugepage", "nohugepage", "pageout", "collapse", "guard_install",
           "guard_remove", "populate_write")
FEATURE_NAMES = ("pagefault_flag_wp", "event_fork", "event_remap", "event_remove",
                 "missing_hugetlbfs", "missing_shmem", "event_unmap", "sigbus", "thread_id",
                 "minor_hugetlbfs", "minor_shmem", "exact_address", "wp_hugetlbfs_shmem",
                 "wp_unpopulated", "poison", "wp_async", "move")
REGISTER_MODES = ("missing", "wp", "minor")
MODES = {"copy": ("dontwake", "wp"), "zeropage": ("dontwake",), "move": ("dontwake", "allow_src_holes")}
EVENT_TYPES = ("pagefault", "fork", "remap", "remove", "unmap")
PAGE_STATES = ("none", "zero", "present", "swap", "marker")
CAPABILITIES = ("fork", "thp", "ksm", "swap", "pin", "threads", "guard", "huge_zero_page",
                "root", "kernel_faults", "frames")

U64_MAX = (1 << 64) - 1          #: every number in a scenario is an unsigned 64-bit value
MAP_FAILED = (1 << 64) - 1       #: the address of a region whose mmap failed, as in C

# -- limits: every command does bounded work on any input (README, "Limits") ------------------------
MAX_FILE_BYTES = 4 << 20         #: a scenario file is at most this big (100,000 steps of ~40 bytes)
MAX_STEPS = 100_000              #: steps per scenario (their work is bounded by MAX_WORK_PAGES)
#: YAML events (scalars, collection starts and ends) a file may hold: counted by the C parser in
#: constant memory before anything is built, so that dense text (``[0,0,0...]``) is refused fast
MAX_YAML_EVENTS = 1_500_000
MAX_MAPPED_PAGES = 1 << 16       #: pages of all regions together (256 MiB), unless the kernel refuses the size
MAX_OBSERVE_PAGES = 4096         #: pages one observe step looks at
MAX_WORK_PAGES = 1 << 18         #: pages all range steps together may touch (each capped at what is mapped)
#: the ops whose cost grows with the pages of their range (they fault, copy, scan or observe pages)
RANGE_WORK_OPS = ("write", "read", "pin", "ref", "observe", "mlock", "copy", "zeropage", "move", "madvise",
                  "mprotect", "munmap", "munlock", "writeprotect", "register", "unregister", "wake")

LEN = ("pages", "bytes")
IOCTL = ("uffd",)
#: op -> (required fields, optional fields); "len" stands for exactly one of pages/bytes
OPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mmap": (("name", "pages"), ("prot", "shared", "file", "align")),
    "munmap": (("at", "len"), ()),
    "mprotect": (("at", "len", "prot"), ()),
    "mlock": (("at", "len"), ("onfault",)),
    "munlock": (("at", "len"), ()),
    "madvise": (("at", "len", "advice"), ("thread",)),
    "write": (("at", "len", "value"), ("value_step",)),
    "read": (("at", "len"), ()),
    "fork": (("child",), ()),
    "exit": (("proc",), ()),
    "uffd": ((), ("name", "features", "user_mode_only", "api")),
    "api": ((), ("features",) + IOCTL),
    "register": (("at", "len"), ("mode",) + IOCTL),
    "unregister": (("at", "len"), IOCTL),
    "copy": (("dst", "src", "len"), ("mode",) + IOCTL),
    "zeropage": (("at", "len"), ("mode",) + IOCTL),
    "move": (("dst", "src", "len"), ("mode",) + IOCTL),
    "wake": (("at", "len"), IOCTL),
    "writeprotect": (("at", "len", "wp"), IOCTL),
    "ksm_merge": ((), ()),
    "pin": (("at", "len", "name"), ()),
    "unpin": (("name",), ("at", "pages", "bytes")),
    "ref": (("at", "len", "name"), ()),
    "unref": (("name",), ()),
    "mthp": (("size", "enabled"), ()),
    "observe": (("at", "len"), ()),
    "fault_async": (("thread", "at"), ("write", "value")),
    "thread": (("thread",), ()),
    "read_events": ((), IOCTL),
}
#: ops on the machine, not on a process (no ``proc`` field)
MACHINE_OPS = ("mthp",)
#: the keys of a step besides its op
STEP_KEYS = ("expect", "expect_by_kernel", "name")
OUT_FIELDS = {"move": "move", "copy": "copy", "zeropage": "zeropage"}
EXPECT_KEYS = ("ok", "errno", "move", "copy", "zeropage", "pages", "all_pages", "blocked", "events", "hung", "trail")
PAGE_KEYS = ("state", "value", "frame", "thp", "anon_exclusive", "mapcount", "order")
EVENT_KEYS = ("type", "at", "write")


#: the C YAML parser when PyYAML was built with it (several times faster), else the pure-Python one
YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlist = _repr.maxdict = 6
_repr.maxlevel = 3


def show(value: Any) -> str:
    """A short one-line repr of any loaded value (nested, huge or aliased values are cut)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<an integer of {value.bit_length()} bits>"
    try:
        text = _repr.repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return " ".join(text.split())


class ScenarioError(ValueError):
    """A malformed scenario: the message is one line naming the file, the step and the field.

    What the file (or its name) said is escaped (:func:`~uffdsim.textsafe.clean`): a newline or an
    escape sequence in a key cannot forge output lines or reach the terminal.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(clean(str(message)))


@dataclass(frozen=True)
class Addr:
    """An address expression: ``region[+page][+Nb]``, or a plain integer (``region`` is None)."""

    region: str | None
    page: int = 0
    byte: int = 0
    absolute: int | None = None

    def resolve(self, regions: dict[str, int]) -> int:
        """The numeric address, given the base address of each region."""
        if self.region is None:
            assert self.absolute is not None
            return self.absolute
        # a region whose mmap failed is at MAP_FAILED ((void *)-1), and C pointer arithmetic wraps
        return (regions.get(self.region, MAP_FAILED) + self.page * PAGE + self.byte) & U64_MAX

    def __str__(self) -> str:
        if self.region is None:
            return hex(self.absolute or 0)
        return self.region + (f"+{self.page}" if self.page else "") + (f"+{self.byte}b" if self.byte else "")


@dataclass
class Step:
    """One step: ``op`` with its fields (addresses parsed, lengths in bytes) and its expectation."""

    i: int
    op: str
    args: dict[str, Any]
    expect: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    #: (kernel spec, expectation) pairs: the first whose spec the kernel satisfies replaces ``expect``
    expect_by_kernel: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: the step's optional ``name:`` (kebab-case, unique in the scenario): the book cites it as
    #: ``{claim}`scenario#name```
    name: str | None = None

    def expect_for(self, profile: Any) -> dict[str, Any] | None:
        """The expectation for a kernel profile (:mod:`uffdsim.kernels`)."""
        from .kernels import matches
        for spec, expect in self.expect_by_kernel:
            if matches(spec, profile):
                return expect
        return self.expect

    @property
    def proc(self) -> str:
        return self.args.get("proc", "main")


@dataclass
class Scenario:
    name: str
    about: str
    steps: list[Step]
    requires: list[str] = field(default_factory=list)
    path: str = "<string>"
    kernel: str | None = None          #: the kernels it applies to (``">=6.9"``); others skip it

    def region_pages(self) -> dict[str, int]:
        """Region name -> size in pages, from the mmap steps."""
        return {s.args["name"]: s.args["pages"] for s in self.steps if s.op == "mmap"}


MAX_OFFSET = 1 << 63             #: region + offset must stay a 64-bit address


def parse_addr(value: Any) -> Addr:
    """``src``, ``src+3``, ``src+3+1b``, ``src+1b``, or an integer (also written as a hex string)."""
    if isinstance(value, bool):
        raise ValueError(f"expected an address, got {value!r}")
    if isinstance(value, int):
        return Addr(None, absolute=_int(value))
    if isinstance(value, str) and len(value) <= 200:
        text = value.strip()
        if re.fullmatch(r"0[xX][0-9a-fA-F]+|[0-9]+", text):      # ASCII digits only (not '４')
            return Addr(None, absolute=_int(int(text, 0)))
        m = ADDR_RE.match(text)
        if m:
            page, byte = int(m["page"] or 0), int(m["byte"] or 0)
            if page * PAGE + byte > MAX_OFFSET:
                raise ValueError(f"offset of {show(value)} is beyond the address space (at most {MAX_OFFSET:#x} bytes)")
            return Addr(m["region"], page, byte)
    raise ValueError(f"expected an address like 'src', 'src+3', 'src+3+1b' or an integer, got {show(value)}")


def _int(value: Any, lo: int | None = 0, hi: int | None = U64_MAX) -> int:
    """An integer (or an integer written as text) in ``lo..hi``; by default an unsigned 64-bit value."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and len(value) <= 40 and re.fullmatch(r"-?(0[xX][0-9a-fA-F]+|[0-9]+)", value.strip()):
            value = int(value.strip(), 0)
        else:
            raise ValueError(f"expected an integer, got {show(value)}")
    if lo is not None and value < lo:
        raise ValueError(f"expected an integer >= {lo}, got {show(value)}")
    if hi is not None and value > hi:
        what = {U64_MAX: " (out of the unsigned 64-bit range)",
                U64_MAX // PAGE: " (the length in bytes must fit in 64 bits)"}.get(hi, "")
        raise ValueError(f"expected an integer <= {hi}{what}, got {show(value)}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {show(value)}")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {show(value)}")
        return value
    return check


def _names(options: tuple[str, ...]) -> Callable[[Any], list[str]]:
    def check(value: Any) -> list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ValueError(f"expected a list of names, got {show(value)}")
        for item in items:
            if not isinstance(item, str) or item not in options:
                raise ValueError(f"expected names from {', '.join(options)}, got {show(item)}")
        return list(items)
    return check


def _ident(value: Any) -> str:
    if not isinstance(value, str) or not REGION_RE.match(value):
        raise ValueError(f"expected a name (letters, digits, _), got {show(value)}")
    return value


#: the anonymous mTHP sizes a scenario may set (``mthp: {size: 64K, enabled: always}``), in KiB
MTHP_SIZES = {"16K": 16, "32K": 32, "64K": 64, "128K": 128, "256K": 256, "512K": 512,
              "1024K": 1024, "1M": 1024, "2048K": 2048, "2M": 2048}
MTHP_POLICIES = ("always", "inherit", "madvise", "never")
#: the most pages one ref step may reference (a pipe holds at most 1 MiB by default, fs/pipe-max-size)
MAX_REF_PAGES = 256


def _mthp_size(value: Any) -> int:
    if isinstance(value, str) and value in MTHP_SIZES:
        return MTHP_SIZES[value]
    raise ValueError(f"expected an mTHP size ({', '.join(MTHP_SIZES)}), got {show(value)}")


def _align(value: Any) -> int:
    table = {"4K": PAGE, "4k": PAGE, "2M": 2 << 20, "2m": 2 << 20}
    if isinstance(value, str) and value in table:
        return table[value]
    raise ValueError(f"expected 4K or 2M, got {show(value)}")


FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": _ident, "child": _ident, "proc": _ident, "thread": _ident, "uffd": _ident,
    "pages": lambda v: _int(v, 0, U64_MAX // PAGE), "bytes": lambda v: _int(v, 0),
    "prot": _choice(PROTS), "shared": _bool, "file": _choice(("none", "private", "shared")),
    "align": _align, "at": parse_addr, "dst": parse_addr, "src": parse_addr,
    "advice": _choice(ADVICES), "value": lambda v: _int(v, 0, 255), "value_step": lambda v: _int(v, 0, 255),
    "features": _names(FEATURE_NAMES), "user_mode_only": _bool, "api": _bool, "wp": _bool,
    "write": _bool, "onfault": _bool, "size": _mthp_size, "enabled": _choice(MTHP_POLICIES),
}


def _fail(path: str, where: str, msg: str) -> ScenarioError:
    return ScenarioError(clean(f"{path}: {where}: {msg}"))


def parse_step(path: str, i: int, raw: Any) -> Step:
    """Validate one step mapping and turn it into a :class:`Step`."""
    if not isinstance(raw, dict):
        raise _fail(path, f"step {i}", f"expected a mapping with one op, got {show(raw)}")
    keys = [k for k in raw if k not in STEP_KEYS]
    if len(keys) != 1:
        raise _fail(path, f"step {i}", f"expected exactly one op key, got {show(keys) if keys else 'none'}")
    op = keys[0]
    if not isinstance(op, str) or op not in OPS:
        raise _fail(path, f"step {i}", f"unknown op {show(op)} (ops: {', '.join(OPS)})")
    where = f"step {i} ({op})"
    fields = raw[op] if raw[op] is not None else {}
    if not isinstance(fields, dict):
        raise _fail(path, where, f"expected a mapping of fields, got {show(fields)}")
    required, optional = OPS[op]
    allowed = set(required) | set(optional) | ({"proc"} if op not in MACHINE_OPS else set())
    if "len" in allowed:
        allowed = (allowed - {"len"}) | set(LEN)       # "len" stands for pages/bytes: it is no field
    if op in MODES or op == "register":
        allowed.add("mode")
    args: dict[str, Any] = {}
    for key, value in fields.items():
        if not isinstance(key, str) or key not in allowed:
            raise _fail(path, f"{where}: field {show(key)}", f"not a field of {op} (fields: {', '.join(sorted(allowed - {'len'}))})")
        try:
            if key == "mode":
                args[key] = (_int(value, 0) if isinstance(value, int) and not isinstance(value, bool)
                             else _names(MODES.get(op, REGISTER_MODES))(value))
            elif key == "proc" and op == "exit":
                args[key] = _ident(value)
            else:
                args[key] = FIELD_CHECKS[key](value)
        except ValueError as err:
            raise _fail(path, f"{where}: field {key!r}", str(err)) from None
    for key in required:
        if key == "len":
            given = [k for k in LEN if k in args]
            if len(given) != 1:
                raise _fail(path, f"{where}: field 'pages'", "give exactly one of pages: N or bytes: N")
            args["length"] = args.pop("pages") * PAGE if "pages" in args else args.pop("bytes")
        elif key not in args:
            raise _fail(path, f"{where}: field {key!r}", "missing")
    if op == "mmap" and args["pages"] == 0:
        raise _fail(path, f"{where}: field 'pages'", "a region needs at least one page")
    if op == "ref" and not 0 < args["length"] <= MAX_REF_PAGES * PAGE:
        raise _fail(path, f"{where}: field '{'pages' if 'pages' in fields else 'bytes'}'",
                    f"a reference covers 1 to {MAX_REF_PAGES} pages ({MAX_REF_PAGES * PAGE} bytes), got {args['length']} bytes")

    expect = raw.get("expect")
    if expect is not None:
        expect = parse_expect(path, where, op, expect)
    by_kernel = []
    ebk = raw.get("expect_by_kernel")
    if ebk is not None:
        from .kernels import parse_spec
        if not isinstance(ebk, dict) or not ebk:
            raise _fail(path, f"{where}: field 'expect_by_kernel'", f"expected a mapping of kernel spec -> expect, got {show(ebk)}")
        for spec, exp in ebk.items():
            shown = clean(spec[:60]) if isinstance(spec, str) else show(spec)
            try:
                parse_spec(spec)
            except ValueError as err:
                raise _fail(path, f"{where}: field 'expect_by_kernel.{shown}'", clean(str(err)[:200])) from None
            by_kernel.append((spec, parse_expect(path, f"{where}: expect_by_kernel.{shown}", op, exp)))
    return Step(i, op, args, expect, raw, by_kernel, _step_name(path, where, raw))


def _step_name(path: str, where: str, raw: dict[str, Any]) -> str | None:
    """A step's ``name:``: kebab-case, not a number (a number cites a step by its index)."""
    name = raw.get("name")
    if name is None:
        return None
    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 100 or name.isdigit():
        raise _fail(path, f"{where}: field 'name'",
                    f"expected a kebab-case step name (not a number), got {show(name)}")
    return name


def parse_expect(path: str, where: str, op: str, expect: Any) -> dict[str, Any]:
    """Validate an ``expect`` mapping."""
    w = f"{where}: field 'expect'"
    if not isinstance(expect, dict):
        raise _fail(path, w, f"expected a mapping, got {show(expect)}")
    out: dict[str, Any] = {}
    for key, value in expect.items():
        if not isinstance(key, str) or key not in EXPECT_KEYS:
            raise _fail(path, f"{where}: field 'expect.{show(key)}'", f"unknown expectation (known: {', '.join(EXPECT_KEYS)})")
        try:
            out[key] = _expect_value(key, value)
        except ValueError as err:
            raise _fail(path, f"{where}: field 'expect.{key}'", str(err)) from None
    return out


def _expect_value(key: str, value: Any) -> Any:
    if key in ("ok", "blocked", "hung"):
        return _bool(value)
    if key == "errno":
        if not isinstance(value, str) or value not in ERRNO_VALUES:
            raise ValueError(f"unknown errno name {show(value)}")
        return value
    if key in OUT_FIELDS:
        if value == "unwritten":
            return value
        if isinstance(value, str) and value.startswith("-E") and value[1:] in ERRNO_VALUES:
            return -ERRNO_VALUES[value[1:]]
        return _int(value, -U64_MAX, U64_MAX)
    if key == "trail":
        if not isinstance(value, str):
            raise ValueError(f"expected text to find in the trail, got {show(value)}")
        return value
    if key == "all_pages":
        # one page expectation that every observed page must meet (ported suites check whole ranges)
        return _expect_value("pages", [value])[0]
    if key == "pages":
        if not isinstance(value, list):
            raise ValueError(f"expected a list of pages, got {show(value)}")
        pages = []
        for page in value:
            if not isinstance(page, dict) or set(page) - set(PAGE_KEYS):
                raise ValueError(f"each page is a mapping of {', '.join(PAGE_KEYS)}, got {show(page)}")
            p = dict(page)
            if "state" in p:
                _choice(PAGE_STATES)(p["state"])
            if "value" in p:
                p["value"] = _int(p["value"], 0, 255)
            if "thp" in p:
                _bool(p["thp"])
            if "anon_exclusive" in p:
                _bool(p["anon_exclusive"])
            if "mapcount" in p:
                p["mapcount"] = _int(p["mapcount"], 0, 1 << 31)
            if "order" in p and p["order"] is not None:
                p["order"] = _int(p["order"], 0, 9)          # anonymous folios: at most PMD order (x86-64, 4 KiB pages)
            if "frame" in p and not isinstance(p["frame"], str):
                raise ValueError(f"a frame is a label like f0 or zero, got {show(p['frame'])}")
            pages.append(p)
        return pages
    if key == "events":
        if not isinstance(value, list):
            raise ValueError(f"expected a list of events, got {show(value)}")
        events = []
        for ev in value:
            if not isinstance(ev, dict) or set(ev) - set(EVENT_KEYS):
                raise ValueError(f"each event is a mapping of {', '.join(EVENT_KEYS)}, got {show(ev)}")
            e = dict(ev)
            if "type" in e:
                _choice(EVENT_TYPES)(e["type"])
            if "at" in e:
                e["at"] = str(parse_addr(e["at"]))
            if "write" in e:
                _bool(e["write"])
            events.append(e)
        return events
    raise ValueError(f"unknown expectation {show(key)}")


def parse_scenario(data: Any, path: str = "<string>") -> Scenario:
    """Validate a loaded YAML document."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a mapping with name, about and steps")
    unknown = [k for k in data if k not in ("name", "about", "requires", "steps", "kernel")]
    if unknown:
        raise ScenarioError(f"{path}: field {show(unknown[0])}: unknown top-level field")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 100:
        raise ScenarioError(f"{path}: field 'name': expected a kebab-case name, got {show(name)}")
    about = data.get("about", "")
    if not isinstance(about, str):
        raise ScenarioError(f"{path}: field 'about': expected text")
    requires = data.get("requires", []) or []
    if not isinstance(requires, list) or any(not isinstance(r, str) or r not in CAPABILITIES for r in requires):
        raise ScenarioError(f"{path}: field 'requires': expected a list of {', '.join(CAPABILITIES)}, got {show(requires)}")
    steps_raw = data.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise ScenarioError(f"{path}: field 'steps': expected a non-empty list of steps")
    if len(steps_raw) > MAX_STEPS:
        raise ScenarioError(f"{path}: field 'steps': {len(steps_raw)} steps, more than the limit of {MAX_STEPS}")
    steps = [parse_step(path, i, raw) for i, raw in enumerate(steps_raw)]
    named: dict[str, int] = {}
    for s in steps:
        if s.name is not None and named.setdefault(s.name, s.i) != s.i:
            raise _fail(path, f"step {s.i} ({s.op}): field 'name'",
                        f"step {named[s.name]} is named {s.name!r} already (a step name is unique)")
    check_names(path, steps)
    check_limits(path, steps)
    kernel = data.get("kernel")
    if kernel is not None:
        from .kernels import parse_spec
        if not isinstance(kernel, str):
            raise _fail(path, "field 'kernel'", f"expected a kernel spec such as '>=6.9', got {show(kernel)}")
        try:
            parse_spec(kernel)
        except ValueError as err:
            raise ScenarioError(f"{path}: field 'kernel': {err}") from None
    return Scenario(name, about, steps, list(requires), path, kernel)


def check_names(path: str, steps: list[Step]) -> None:
    """Regions, processes, userfaultfds and threads must be defined before they are used."""
    regions: set[str] = set()
    procs = {"main"}
    uffds: set[str] = set()
    for s in steps:
        where = f"step {s.i} ({s.op})"
        proc = s.args.get("proc", "main")
        if proc not in procs:
            raise _fail(path, f"{where}: field 'proc'", f"no process named {proc!r} (forked so far: {', '.join(sorted(procs))})")
        for key in ("at", "dst", "src"):
            a = s.args.get(key)
            if isinstance(a, Addr) and a.region is not None and a.region not in regions:
                raise _fail(path, f"{where}: field {key!r}", f"no region named {a.region!r} mapped before this step")
        if s.args.get("uffd") is not None and s.args["uffd"] not in uffds:
            raise _fail(path, f"{where}: field 'uffd'", f"no userfaultfd named {s.args['uffd']!r}")
        if s.op == "mmap":
            if s.args["name"] in regions:
                raise _fail(path, f"{where}: field 'name'", f"region {s.args['name']!r} is mapped already")
            regions.add(s.args["name"])
        elif s.op == "fork":
            if s.args["child"] in procs:
                raise _fail(path, f"{where}: field 'child'", f"process {s.args['child']!r} exists already")
            procs.add(s.args["child"])
        elif s.op == "uffd" and "name" in s.args:
            uffds.add(s.args["name"])


#: ops that may split the VMAs at both ends of their range (each adds at most two VMAs)
SPLITTING_OPS = ("munmap", "mprotect", "mlock", "munlock", "madvise", "register", "unregister")
#: KSM pages one merge can make: the simulator's stable tree has one page per byte value
KSM_MAX_STABLE = 256
#: entries a bare page-table walk visits (make_ksm_page() write-protecting a KSM page's mappings) in
#: the time of one unit of work (a page faulted in, a PTE copied by fork)
PTE_VISITS_PER_UNIT = 16


def step_work(s: Step, mapped: int, vmas: int, tables: int, procs: int) -> int:
    """The pages and page-table entries step ``s`` may visit, given upper bounds on the machine's size.

    ``mapped`` pages of all regions, ``vmas`` VMAs and ``tables`` page tables per process, ``procs``
    live processes.  What each op really walks: a range op its range (capped at what is mapped) and
    the VMAs it crosses; fork and exit one address space; ksm_merge every live process twice
    (ksm_do_scan() until nothing merges) and, for each KSM page it makes, every page table of every
    process again (make_ksm_page() write-protects all its mappings).
    """
    if "length" in s.args:
        start = s.args.get("at", s.args.get("src"))
        offset = (start.absolute if start.region is None else start.byte) % PAGE if isinstance(start, Addr) else PAGE - 1
        pages = -(-(offset + s.args["length"]) // PAGE)
        if s.op == "observe":
            return pages + 1
        walk = min(pages, vmas) if s.op in SPLITTING_OPS else 0      # these walk the VMAs of the range
        return min(pages, mapped) + walk + 1
    if s.op in ("fork", "exit"):
        return mapped + vmas + 1
    if s.op == "ksm_merge":
        space = mapped + vmas + tables
        remap = min(KSM_MAX_STABLE, mapped) * procs * (mapped + tables)
        return 2 * procs * space + remap // PTE_VISITS_PER_UNIT + 1
    return 1


def check_limits(path: str, steps: list[Step]) -> None:
    """The documented limits: mapped pages, observed pages, and the work all steps may do (:func:`step_work`)."""
    mapped = work = tables = 0
    vmas = 0
    alive = {"main"}
    for s in steps:
        where = f"step {s.i} ({s.op})"
        if s.op == "mmap":
            if s.args["pages"] * PAGE <= TASK_SIZE:     # larger: the kernel refuses it (ENOMEM), no work
                mapped += s.args["pages"]
                tables += s.args["pages"] // 512 + 2
                vmas += 1
            if mapped > MAX_MAPPED_PAGES:
                raise _fail(path, f"{where}: field 'pages'",
                            f"the regions of one scenario map at most {MAX_MAPPED_PAGES} pages together (limit); "
                            f"this one brings them to {mapped}")
        if s.op == "observe" and s.args["length"] > MAX_OBSERVE_PAGES * PAGE:
            raise _fail(path, f"{where}: field 'pages'",
                        f"observe looks at most at {MAX_OBSERVE_PAGES} pages per step (limit)")
        work += step_work(s, mapped, vmas, tables, len(alive))
        if s.op in SPLITTING_OPS:
            vmas = min(vmas + 2, mapped)                # each VMA holds a page at least
        elif s.op == "fork":
            alive.add(s.args["child"])
        elif s.op == "exit":
            alive.discard(s.args["proc"])
        if work > MAX_WORK_PAGES:
            raise _fail(path, where, f"the steps of one scenario touch at most {MAX_WORK_PAGES} pages together "
                                     "(limit; a range step counts its pages, capped at the pages mapped, and the VMAs "
                                     "it crosses; fork and exit the pages and VMAs mapped; ksm_merge those of every "
                                     "process twice, and again for each KSM page it makes)")


def _yaml_message(err: BaseException) -> str:
    """One line from a YAML parser error: where and what."""
    if isinstance(err, yaml.YAMLError):
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        problem = getattr(err, "problem", None) or getattr(err, "reason", None) or str(err)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        text = f"{where}not valid YAML ({problem})"
    elif isinstance(err, RecursionError):
        text = "not valid YAML (nested too deeply)"
    else:                                                 # e.g. an integer with too many digits
        text = f"not valid YAML ({err})"
    return " ".join(text.split())[:300]


class _ScenarioLoader(YamlLoader):  # type: ignore[misc,valid-type]
    """The safe loader, but a mapping with the same key twice is an error."""


def _construct_mapping(loader: Any, node: Any, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a plain value",
                                                    key_node.start_mark) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {show(key)}", key_node.start_mark)
        seen.add(key)
    return yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep)


_ScenarioLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def read_text(path: str | Path, limit: int = MAX_FILE_BYTES) -> str:
    """The text of a file: at most ``limit`` bytes of strict UTF-8 without NUL (ScenarioError otherwise)."""
    if not str(path):
        raise ScenarioError("'': an empty file name (name a scenario file)")
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise ScenarioError(f"{p}: cannot read: {err.strerror or err}") from None
    try:
        data = read_at_most(fd, limit)
    except OSError as err:
        raise ScenarioError(f"{p}: cannot read: {err.strerror or err}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ScenarioError(f"{p}: larger than {limit} bytes (limit for a scenario file)")
    return decode_text(data, str(p))


def decode_text(data: bytes, path: str) -> str:
    """Strict UTF-8, no NUL byte: a scenario is a text file."""
    nul = data.find(b"\0")
    if nul >= 0:
        raise ScenarioError(f"{path}: byte {nul}: a NUL byte; a scenario is UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ScenarioError(f"{path}: byte {err.start}: not UTF-8 text ({err.reason}); "
                            "save the file as UTF-8") from None


def count_events(text: str, path: str, limit: int = MAX_YAML_EVENTS) -> int:
    """The YAML events of ``text`` (the parser's output, nothing built): ScenarioError past ``limit``."""
    loader = YamlLoader(text)
    n = 0
    try:
        while loader.check_event():
            loader.get_event()
            n += 1
            if n > limit:
                raise ScenarioError(f"{path}: more than {limit} YAML nodes (limit for a scenario; "
                                    f"{MAX_STEPS} steps need far fewer)")
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError, MemoryError) as err:
        raise ScenarioError(f"{path}: {_yaml_message(err)}") from None
    finally:
        loader.dispose()
    return n


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate one scenario file."""
    return loads_scenario(read_text(path), str(path))


def loads_scenario(text: str, path: str = "<string>") -> Scenario:
    """Validate a scenario given as YAML text (handy in notebooks and tests)."""
    if not isinstance(text, str):
        raise ScenarioError(f"{path}: expected the scenario as text, got {type(text).__name__}")
    if len(text) > MAX_FILE_BYTES:
        raise ScenarioError(f"{path}: larger than {MAX_FILE_BYTES} characters (limit for a scenario)")
    if "\0" in text:
        raise ScenarioError(f"{path}: character {text.index(chr(0))}: a NUL character; a scenario is text")
    count_events(text, path)
    try:
        data = yaml.load(text, Loader=_ScenarioLoader)
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError, MemoryError) as err:
        raise ScenarioError(f"{path}: {_yaml_message(err)}") from None
    return parse_scenario(data, path)
