"""Kernel profiles: which kernel (version and config) the simulator models.

``Machine(kernel="6.18")`` (the default) models this project's reference kernel;
``Machine(kernel="6.12")`` answers as Debian's 6.12 does, ``"6.1"`` as a kernel without
``UFFDIO_MOVE``.  A profile is a version plus config switches (:class:`KernelProfile`); the model
asks :meth:`KernelProfile.has` at each place where the kernel's code changed, and every such
change is one :class:`Change` in :data:`CHANGES`, naming its commit and the scenario that shows it.
``observed`` says where the difference was seen on a real kernel (the lab boots Debian's 6.12 and
6.1; 6.18 is this machine) or ``modelled only`` (6.8, 6.9 and 6.15 cannot be booted here).
"""
from __future__ import annotations

import gzip
import platform
import re
from dataclasses import dataclass, field, replace
from typing import Any

#: UFFD_FEATURE_* bits 0..12: what 6.1 offers (0x1fff); 6.4 adds WP_UNPOPULATED, 6.6 POISON,
#: 6.7 WP_ASYNC, 6.8 MOVE (0x1ffff)
FEATURES_6_1 = 0x1FFF


@dataclass(frozen=True)
class Change:
    """One observable behaviour change of the kernel, as the model applies it."""

    key: str
    since: tuple[int, int]       #: first version with the new behaviour
    commit: str                  #: the commit (hash and subject; "hash not verified" where so)
    before: str
    after: str
    scenario: str                #: the corpus scenario that shows the difference
    observed: str                #: where the difference was seen on real kernels
    #: what the table shows in place of ``since`` ("6.18 and later", a stable fix's releases); "" for ``since``
    label: str = ""


CHANGES: dict[str, Change] = {c.key: c for c in (
    Change("move", (6, 8), "adef440691ba userfaultfd: UFFDIO_MOVE uABI",
           "no UFFD_FEATURE_MOVE (features 0x1fff); the UFFDIO_MOVE ioctl fails with EINVAL",
           "UFFD_FEATURE_MOVE offered; UFFDIO_MOVE moves pages", "api-move-feature-not-required",
           "lab: 6.1.192 (no MOVE) vs 6.12.118 and 6.18"),
    Change("mthp", (6, 8), "19eaf44954df mm: thp: support allocation of anonymous multi-size THP",
           "anonymous faults map small pages or PMD-size THPs only; no hugepages-<size>kB knobs",
           "hugepages-<size>kB/enabled per size (on x86-64 16 KiB to 2 MiB, 2048kB being the PMD size): a write "
           "fault may map a large folio smaller than a PMD (never in a VMA registered with a userfaultfd: "
           "alloc_anon_folio() keeps its faults at order 0)",
           "mthp-fault-64k-always", "lab: 6.12.118 and 6.18 map 64 KiB folios; 6.1.192 has no hugepages-64kB knob"),
    Change("mthp_swapin", (6, 12),
           "242d12c98174 mm: support large folios swap-in for sync io devices (Chuanhua Han, Barry Song; "
           "release not checked against a tag: the lab's 6.12.118 has it)",
           "a swapped-out page comes back as a small folio, one page per fault",
           "on a synchronous swap device (zram) a fault swaps in a whole mTHP folio when the aligned range "
           "is all contiguous, exclusive swap entries and the policy allows that size (alloc_swap_folio(); "
           "never in a VMA registered with a userfaultfd, nor once zswap has been enabled)",
           "mthp-swapin-whole-folio", "lab: 6.12.118 and 6.18 (zram) swap the whole 64 KiB folio back in"),
    Change("move_batch", (6, 18), "userfaultfd: opportunistic TLB-flush batching for present pages in MOVE "
           "(Lokesh Gidra; hash not verified here)",
           "move_pages() stores every PTE step's result in err: after an internal -EAGAIN retry the "
           "next step counts normally",
           "move_pages_ptes() returns bytes and move_pages() stores only negative results in err: after "
           "an internal -EAGAIN, a later successful PTE-level step is neither counted nor advanced past "
           "(a whole-PMD move stores its 0 in err and clears it) (pages "
           "moved but missing from the count, EEXIST on their own destination; with ALLOW_SRC_HOLES "
           "a hole makes the ioctl spin until a fatal signal)",
           "mthp-move-whole-folio-splits",
           "6.18 (uffd_move_eagain_retry.c reproduces both); still in a mid-2026 mainline tree; a race, so "
           "no scenario shows it", label="6.18 and later"),
    Change("move_zeropage", (6, 9), "eb1521dad8f3 userfaultfd: handle zeropage moves by UFFDIO_MOVE",
           "a zero-page source (small or huge) gives EBUSY", "the zero page moves (the destination maps it)",
           "zero-page-move", "modelled only (6.8 cannot be booted here)"),
    Change("move_enoent", (6, 9), "867a43a34ff8 userfaultfd: use per-vma locks in userfaultfd operations",
           "no VMA at dst_start or src_start gives EINVAL",
           "it gives ENOENT (a range running past the end of its VMA is still EINVAL: vma-src-crosses-vma-end)",
           "vma-src-unmapped",
           "modelled only (6.8 cannot be booted here)"),
    Change("mmap_changing_eagain", (6, 9),
           "userfaultfd: fix return error if mmap_changing is non-zero in MOVE ioctl (Lokesh Gidra, "
           "January 2024; hash not verified here; in the 6.9-rc1 MM pull request, A5 S14; "
           "5e4c24a57b0c, which adds the rw_sem, already has -EAGAIN)",
           "a non-cooperative event raised while the call waits for mmap_lock (seen on the re-check) "
           "gives EINVAL; one pending at entry gives EAGAIN, as in every release",
           "the re-check gives EAGAIN too",
           "mmap-changing-remove-event",
           "modelled only (6.8 cannot be booted here); a race, so the scenario shows only the entry "
           "check's EAGAIN, the same on 6.8"),
    Change("huge_zero_wp_thp", (6, 13), "1ced09e0331f mm: allocate THP on hugezeropage wp-fault (Dev Jain)",
           "a write to the huge zero page splits the PMD: one new small page, the zero page around it",
           "the write allocates a whole THP", "thp-huge-zero-write-allocates-thp",
           "lab: 6.12.118 splits, 6.18 allocates a THP"),
    Change("split_zero_remap", (6, 12),
           "b1f202060afe mm: remap unused subpages to shared zeropage when splitting isolated thp",
           "a THP split by MOVE keeps every subpage as its own small page",
           "zero-filled subpages of the split THP are mapped to the shared zero page (not in an mlocked VMA: "
           "thp-split-move-mlocked-zero-subpage-keeps-frame)",
           "thp-split-zero-subpages-become-zero-page", "6.12.118 (lab) and 6.18; found by the THP fuzzer"),
    Change("guard_install", (6, 13),
           "662df3e5c376 mm: madvise: implement lightweight guard page mechanism",
           "MADV_GUARD_INSTALL/REMOVE are unknown advices: EINVAL", "guard markers are installed",
           "guard-install-zaps-page", "lab: 6.12.118 refuses MADV_GUARD_INSTALL (the guard scenarios skip there)"),
    Change("kpageflags_folio", (6, 10),
           "dee3d0bef2b0 proc: rewrite stable_page_flags() (Matthew Wilcox, v6.10-rc1)",
           "/proc/kpageflags copies each page's own flags: bit 34 is the page's PG_anon_exclusive",
           "it copies the folio's flags: every page of a large folio shows its head page's PG_anon_exclusive",
           "fork-anon-exclusive-observed",
           "lab: a PMD-mapped THP's tail page shows 0 on 6.1.0-57, 1 on 6.12.118 and 6.18 (and on 6.18 a reused "
           "tail page of a PTE-mapped THP shows its head's 0: thp-kpageflags-shows-head-flag)"),
    Change("large_cow_reuse", (6, 15), "1da190f4d0a6 mm: Copy-on-Write (COW) reuse support for PTE-mapped THP",
           "a write fault on a not-exclusive page of a large folio always copies the page",
           "it reuses the page (and makes it exclusive) when more than one page of the folio is mapped and "
           "every reference is a mapping of this one mm (__wp_can_reuse_large_anon_folio(), CONFIG_MM_ID; a "
           "folio with a single page mapped is still copied from, so that it can be freed)", "thp-kpageflags-shows-head-flag",
           "6.18 (a PTE-mapped THP after fork and exit keeps its frame on a write); lab: 6.12.118 copies the "
           "written page out of a 64 KiB folio, 6.18 reuses it in place (mthp-fork-exit-still-busy)"),
    Change("eagain_out", (6, 15), "95567729173e userfaultfd: fix uninitialized output field for -EAGAIN race",
           "an early EAGAIN (mmap_changing on entry) leaves the move/copy/zeropage field unwritten",
           "the field gets -EAGAIN", "mmap-changing-remove-event",
           "lab: 6.12.118 already writes -EAGAIN (stable backport; the 6.12 profile carries it)"),
)}

#: behaviour changes of real kernels that no profile switches: the model answers as the fixed kernel on
#: every profile (A2 lists them with :data:`CHANGES`)
UNMODELLED: dict[str, Change] = {c.key: c for c in (
    Change("split_ebusy", (6, 18),
           "userfaultfd: fix UFFDIO_MOVE livelock on large folio with extra references (2026 stable fix; "
           "hash not verified here; not found in the mainline trees read, up to one of mid-2026)",
           "a move that must split a PTE-mapped large folio holding an extra reference (an ordinary one, "
           "or a pin: move_pages_pte(), move_pages_ptes() from 6.18, checks no pin before the split): "
           "split_folio()'s -EAGAIN goes back to move_pages(), which retries the same page while the "
           "reference is held (a livelock, ended only by a fatal signal); 6.8 to 6.18 as released and older stable updates",
           "move_pages_pte() (move_pages_ptes() on 6.18) turns the split's -EAGAIN into -EBUSY: the move "
           "fails with EBUSY at once "
           "(mthp-pin-ebusy for a pin; a pinned small folio, or a THP moved whole as a PMD, is refused by "
           "folio_maybe_dma_pinned() with EBUSY on every version)",
           "mthp-ref-ebusy",
           "6.12.118 (lab) and this machine's 6.18.44 give EBUSY at once (mthp-ref-ebusy); the simulator "
           "answers EBUSY on every profile and does not model the livelock",
           label="2026 stable (6.12.118, 6.18.44)"),
)}

#: the config switches a profile carries, and what each changes
CONFIG_SWITCHES = {
    "pt_reclaim": "CONFIG_PT_RECLAIM (6.14+, x86-64 only up to 6.18, 6375e95f381e mm: pgtable: reclaim empty PTE page in "
                  "madvise(MADV_DONTNEED)): a DONTNEED whose range covers a page table's whole 2 MiB-aligned "
                  "span frees that emptied table, so a THP can then move whole into that PMD (scenario thp-dontneed-whole-table-pt-reclaim; "
                  "lab: off in Debian's 6.12.118, on in this machine's 6.18)",
}


@dataclass(frozen=True)
class KernelProfile:
    """A kernel version and the config switches that change what a caller observes."""

    name: str
    version: tuple[int, int]
    pt_reclaim: bool = False
    note: str = ""
    #: changes this kernel has although older than their release (stable backports seen in the lab)
    backports: frozenset[str] = frozenset()

    def has(self, key: str) -> bool:
        """Does this kernel have the behaviour change ``key`` (a key of :data:`CHANGES`)?"""
        return self.version >= CHANGES[key].since or key in self.backports

    @property
    def features(self) -> int:
        """The UFFD_FEATURE_* mask UFFDIO_API reports."""
        return 0x1FFFF if self.has("move") else FEATURES_6_1

    def differences(self, other: "KernelProfile") -> list[str]:
        """The keys of :data:`CHANGES` (and config switches) on which two profiles differ."""
        out = [k for k in CHANGES if self.has(k) != other.has(k)]
        return out + (["pt_reclaim"] if self.pt_reclaim != other.pt_reclaim else [])


PROFILES: dict[str, KernelProfile] = {p.name: p for p in (
    KernelProfile("6.1", (6, 1), note="no UFFDIO_MOVE (Debian 12's default kernel, booted in the lab)"),
    KernelProfile("6.8", (6, 8), note="first with UFFDIO_MOVE (Ubuntu 24.04); modelled only"),
    KernelProfile("6.9", (6, 9), note="zero-page moves, ENOENT/EAGAIN errnos; modelled only"),
    KernelProfile("6.12", (6, 12), note="LTS (Debian 13, RHEL 10, Android 16 GKI); booted in the lab (6.12.118)",
                  backports=frozenset({"eagain_out"})),
    KernelProfile("6.15", (6, 15), pt_reclaim=True, note="early EAGAIN writes the field; modelled only"),
    KernelProfile("6.18", (6, 18), pt_reclaim=True, note="this machine's kernel (CONFIG_PT_RECLAIM=y)"),
)}
DEFAULT = "6.18"


def get_profile(kernel: "str | KernelProfile | None" = None, **config: Any) -> KernelProfile:
    """The profile named ``kernel`` (``"6.12"``; default 6.18), with config switches overridden."""
    if isinstance(kernel, KernelProfile):
        prof = kernel
    else:
        if kernel is not None and not isinstance(kernel, str):   # 6.10 as a float is 6.1: refuse, say why
            from .argcheck import ArgTypeError
            raise ArgTypeError(f"kernel: expected a profile name such as '6.12' (a string), "
                               f"got {type(kernel).__name__} {kernel!r:.40}")
        name = DEFAULT if kernel is None else kernel
        if name not in PROFILES:
            raise ValueError(f"unknown kernel profile {name!r} (known: {', '.join(PROFILES)})")
        prof = PROFILES[name]
    unknown = set(config) - set(CONFIG_SWITCHES)
    if unknown:
        raise ValueError(f"unknown config switch(es) {sorted(unknown)} (known: {', '.join(CONFIG_SWITCHES)})")
    if config and any(getattr(prof, k) != v for k, v in config.items()):
        suffix = ",".join(f"{k}={'y' if v else 'n'}" for k, v in sorted(config.items()))
        prof = replace(prof, name=f"{prof.name}+{suffix}", **config)
    return prof


def parse_release(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        raise ValueError(f"not a kernel release: {release!r}")
    return int(m.group(1)), int(m.group(2))


def profile_for_release(release: str, config: "dict[str, bool] | None" = None,
                        move: "bool | None" = None) -> KernelProfile:
    """The profile for a kernel release: the newest profile not newer than it, with its config."""
    version = parse_release(release)
    if move is False:
        base = PROFILES["6.1"]
    else:
        candidates = [p for p in PROFILES.values() if p.version <= version]
        base = max(candidates, key=lambda p: p.version) if candidates else PROFILES["6.1"]
    cfg = dict(config or {})
    if "pt_reclaim" not in cfg and version != base.version:
        cfg["pt_reclaim"] = version >= (6, 14)          # default y where it exists
    return get_profile(base, **cfg)


def read_config(path: str = "/proc/config.gz") -> "dict[str, bool] | None":
    """The config switches read from ``/proc/config.gz`` (None when it cannot be read)."""
    try:
        with gzip.open(path, "rt") as f:
            text = f.read()
    except (OSError, EOFError):
        return None
    return {"pt_reclaim": "\nCONFIG_PT_RECLAIM=y" in "\n" + text}


def release_profile() -> KernelProfile:
    """The profile for the running kernel: the one the kernel backend found, else from uname and
    /proc/config.gz alone (MOVE decided by the version).

    The kernel backend registers what it finds userfaultfd can do here (:func:`remember_running`,
    from :func:`uffdsim.backends.kernel.profile.running_profile`): the simulator never imports it.
    """
    if _RUNNING:
        return _RUNNING[0]
    return profile_for_release(platform.release(), read_config(), None)


_RUNNING: list[KernelProfile] = []


def remember_running(profile: KernelProfile) -> None:
    """The kernel backend's word on the running kernel's profile, for :func:`profile_of`."""
    _RUNNING[:] = [profile]


# -- version specs in scenarios ------------------------------------------------------------------

_TERM = re.compile(r"^(>=|<=|==|>|<)?\s*([0-9]+\.[0-9]+)$|^(!|no\s+)?([a-z_]+)$", re.ASCII)


def parse_spec(spec: str) -> list[tuple[str, Any]]:
    """``">=6.9"``, ``"<6.15, pt_reclaim"``, ``"no pt_reclaim"``: terms that must all hold; ValueError if bad."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"expected a kernel spec like '>=6.9' or 'pt_reclaim', got {spec!r}")
    terms: list[tuple[str, Any]] = []
    for part in spec.split(","):
        m = _TERM.match(part.strip())
        if not m:
            raise ValueError(f"bad kernel spec term {part.strip()!r} (use >=6.9, <6.15, ==6.12, pt_reclaim, no pt_reclaim)")
        if m.group(2):
            terms.append((m.group(1) or "==", parse_release(m.group(2))))
        else:
            if m.group(4) not in CONFIG_SWITCHES and m.group(4) not in CHANGES:
                raise ValueError(f"unknown switch {m.group(4)!r} in kernel spec (known: "
                                 f"{', '.join(list(CONFIG_SWITCHES) + list(CHANGES))})")
            terms.append(("!" if m.group(3) else "?", m.group(4)))
    return terms


def matches(spec: str, profile: KernelProfile) -> bool:
    """Does ``profile`` satisfy the scenario spec?"""
    v = profile.version
    for op, arg in parse_spec(spec):
        if op in ("?", "!"):
            val = getattr(profile, arg) if arg in CONFIG_SWITCHES else profile.has(arg)
            ok = bool(val) == (op == "?")
        else:
            ok = {"==": v == arg, ">=": v >= arg, "<=": v <= arg, ">": v > arg, "<": v < arg}[op]
        if not ok:
            return False
    return True


def profile_of(backend: str, info: dict) -> KernelProfile:
    """The kernel a backend's run answered as: the profile it names, else the running kernel's.

    The kernel backend names the running kernel's profile in its run's info; without one (a record
    from elsewhere) the running kernel's is taken from its release and config."""
    prof = info.get("profile")
    if isinstance(prof, KernelProfile):
        return prof
    if isinstance(prof, str) and prof in PROFILES:
        return PROFILES[prof]
    return release_profile() if backend == "kernel" else get_profile(None)
