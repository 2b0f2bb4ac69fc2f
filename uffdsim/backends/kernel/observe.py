"""``observe`` on the running kernel: what each page is, read from /proc without faulting anything.

Per page, from ``/proc/self/pagemap`` (Documentation/admin-guide/mm/pagemap.rst):

* ``state``: ``present`` (bit 63), ``swap`` (bit 62), ``marker`` (bit 62 with the guard-region bit
  58, or a swap entry of one of the special types at the top of the type space: PTE markers are
  type 31, their offset says which: guard, poison, uffd-wp), ``zero`` (a present entry for the shared zero page or the huge zero page:
  PAGEMAP_SCAN's ``PAGE_IS_PFNZERO``, or ``KPF_ZERO_PAGE`` in /proc/kpageflags), else ``none``;
* ``frame``: the PFN (bits 0-54; only root sees it, else None);
* ``order``: the order of the present page's folio (0 for a small page and the zero page, 4 for a
  64 KiB mTHP, 9 for a PMD-size THP or the huge zero page), from the compound head/tail bits of
  /proc/kpageflags (root; else not observable); None for a page that is not present;
* ``value``: the first byte of a present page, read with a plain load (the page is present, so
  nothing faults), or through ``/proc/self/mem`` on a PROT_NONE mapping; 0 for the zero page;
* ``thp``: the page is mapped by a huge PMD.  Decided with PAGEMAP_SCAN's ``PAGE_IS_HUGE``, which
  the kernel sets only for PMD mappings: a PTE-mapped large folio is *not* ``thp``.  (A kernel
  that refuses ``PAGE_IS_GUARD`` in the mask, 6.12.118 here, is asked again without it.)  Without
  PAGEMAP_SCAN (Linux < 6.7) it is worked out from kpageflags, smaps and the frames
  (:func:`pmd_mapped_guess`); where that cannot tell a PMD mapping from a PTE-mapped THP the
  page lists ``"thp"`` under ``hidden`` and it is not compared.

Without root (no CAP_SYS_ADMIN) pagemap hides PFNs and swap types: a present page's ``frame`` is
then None and the view lists ``"frame"`` under ``hidden`` (the runner reports it as not
observable and does not compare it); a swap entry with the uffd-wp bit is a uffd-wp marker when
no swap is active (nothing can be swapped out), else its ``state`` is hidden too.  The zero page
is still recognised (PAGEMAP_SCAN works for everyone), and so are guard markers (bit 58).

* ``anon_exclusive``: PG_anon_exclusive as ``/proc/kpageflags`` shows it (bit 34, KPF_OWNER_2, on a
  KPF_ANON page; :func:`~uffdsim.backends.kernel.sys.pagemap.kpf_anon_exclusive`).  kpageflags is a
  debugging interface with no stability promise for this bit, read racily (no lock is held while
  the flags are copied).  Since 6.10 a page of a large folio shows the flag of the folio's head
  page, not its own.  False for the zero pages and other non-anonymous pages;
* ``mapcount``: ``/proc/kpagecount``, the page's precise mapcount (PTE mappings of the page plus
  PMD mappings of its folio); 0 for the zero pages, which are not mapcounted.  Hidden for a KSM
  page: KSM merges equal pages across all processes, so its mapcount counts other programs too;
* ``order``: the folio's order (0 for a small folio, 9 for a PMD-size THP), from kpageflags'
  compound head/tail bits (:func:`~uffdsim.backends.kernel.sys.pagemap.folio_order`); without root
  a PMD-mapped page (PAGEMAP_SCAN's PAGE_IS_HUGE) is order 9 and any other order is hidden.
  These three are None for a page that is not present (none, swap, marker) and hidden without
  root, or (``anon_exclusive``) on kernels older than 5.19, which have no PG_anon_exclusive.

Extra keys, not compared between backends: ``ksm`` (KPF_KSM) and ``mapped_once`` (pagemap bit 56,
"exclusively mapped": the mapcount is 1; this is *not* PageAnonExclusive).
"""
from __future__ import annotations

from pathlib import Path

import os
from typing import Any

from ...errors import UffdError
from . import sys as k
from .access import mappings
from .caps import CAP_SYS_ADMIN, active_swaps, has_cap

#: the page fields read from /proc/kpageflags and /proc/kpagecount (root only)
KPAGE_FIELDS = ("anon_exclusive", "mapcount", "order")

#: swap types at or above this are not swap devices but the kernel's special entries (migration,
#: hwpoison, PTE markers; MAX_SWAPFILES is 32 minus those, 24..29 depending on the config)
FIRST_SPECIAL_SWAP_TYPE = 16


def scan_categories(addr: int, length: int) -> dict[int, int] | None:
    """Page address -> PAGEMAP_SCAN categories for [addr, addr+length) (None: no PAGEMAP_SCAN)."""
    try:
        regions = k.pagemap_scan(addr, length)
    except UffdError:
        return None
    cats: dict[int, int] = {}
    for start, end, cat in regions:
        for page in range(start, end, k.PAGE_SIZE):
            cats[page] = cat
    return cats


def first_bytes(pages: list[int]) -> dict[int, int]:
    """The first byte of each (present) page, without faulting and without disturbing the page.

    A readable page is read with a plain load: reading it through /proc/self/mem would go through
    get_user_pages(), which marks the folio accessed and parks it in a per-CPU LRU batch with an
    extra reference, and that reference alone makes a later write fault copy the page instead of
    reusing it (wp_can_reuse_anon_folio()).  Pages without read permission (PROT_NONE) are read
    through /proc/self/mem, the only way that does not kill the process.
    """
    out: dict[int, int] = {}
    if not pages:
        return out
    maps = mappings()
    fd = -1
    try:
        for page in pages:
            m = next((m for m in maps if m.start <= page < m.end), None)
            if m is not None and m.perms.startswith("r"):
                out[page] = k.peek(page, 1)[0]
                continue
            if fd < 0:
                fd = os.open("/proc/self/mem", os.O_RDONLY)
            try:
                data = os.pread(fd, 1, page)
            except OSError:
                continue
            if data:
                out[page] = data[0]
    finally:
        if fd >= 0:
            os.close(fd)
    return out


def observe(addr: int, length: int) -> list[dict[str, Any]]:
    """The page views of every page touched by [addr, addr+length)."""
    first = addr & ~(k.PAGE_SIZE - 1)
    npages = max(1, (addr + length - first + k.PAGE_SIZE - 1) // k.PAGE_SIZE)
    entries = k.pagemap(first, npages)
    cats = scan_categories(first, npages * k.PAGE_SIZE)
    root_pfns = any(e.present and e.pfn for e in entries)
    pfns_hidden = not (root_pfns or os.geteuid() == 0 or has_cap(CAP_SYS_ADMIN))
    kpage_ok = not pfns_hidden and has_anon_exclusive_bit()
    spans: list[tuple[int, int]] = []      # folios already measured: (first frame, frames)
    views: list[dict[str, Any]] = []
    present: list[int] = []
    orders: dict[int, int] = {}
    for e in entries:
        view: dict[str, Any] = {"state": "none", "value": None, "frame": None, "thp": False,
                                "anon_exclusive": None, "mapcount": None, "order": None}
        cat = cats.get(e.addr, 0) if cats is not None else 0
        if e.present:
            flags = k.kpageflags(e.pfn) if e.pfn else 0
            zero = bool(cat & k.PAGE_IS_PFNZERO) if cats is not None else k.kpf_test(flags, "zero_page")
            if cats is not None:
                view["thp"] = bool(cat & k.PAGE_IS_HUGE)
            else:
                guess = k.pmd_mapped_guess(e, flags)
                view["thp"] = guess is not False
                if guess is None:
                    view["hidden"] = ["thp"]
            if e.pfn:
                if e.pfn not in orders:
                    head, nr = k.folio_span(e.pfn, flags)
                    orders.update(dict.fromkeys(range(head, head + nr), (nr - 1).bit_length()))
                view["order"] = orders[e.pfn]
            else:
                view["hidden"] = view.get("hidden", []) + ["order"]
            if zero:
                view.update(state="zero", value=0, frame=e.pfn or None)
            else:
                view.update(state="present", frame=e.pfn if root_pfns else None)
                present.append(e.addr)
                if pfns_hidden:
                    view["hidden"] = view.get("hidden", []) + ["frame"]
            view["ksm"] = k.kpf_test(flags, "ksm") and process_has_ksm_pages()
            view["mapped_once"] = e.exclusive
            kpage_view(view, e.pfn, flags, kpage_ok, spans)
        elif e.guard or (e.swapped and e.swap_type >= FIRST_SPECIAL_SWAP_TYPE):
            view["state"] = "marker"
            view["marker"] = getattr(e, "marker", None) or ("guard" if e.guard else
                                                             "uffd_wp" if e.uffd_wp else "other")
        elif e.swapped and pfns_hidden and e.uffd_wp:
            if active_swaps():
                view.update(state=None, hidden=["state"])    # swapped-out page or uffd-wp marker
            else:
                view.update(state="marker", marker="uffd_wp")
        elif e.swapped:
            view["state"] = "swap"
        views.append(view)
    values = first_bytes(present)
    for view, e in zip(views, entries):
        if view["state"] == "present":
            view["value"] = values.get(e.addr)
    return views


def has_anon_exclusive_bit() -> bool:
    """Does kpageflags' bit 34 mean PG_anon_exclusive here (PG_mappedtodisk doubles as it since 5.19)?"""
    release = os.uname().release
    nums = [int(x) for x in release.split("-")[0].split(".")[:2] if x.isdigit()]
    return len(nums) == 2 and tuple(nums) >= (5, 19)


def order_of(pfn: int, flags: int, spans: list[tuple[int, int]]) -> int:
    """The folio order of frame ``pfn``, measuring each large folio once per observe."""
    for start, nr in spans:
        if start <= pfn < start + nr:
            return nr.bit_length() - 1
    start, nr = k.folio_span(pfn, flags)
    if nr > 1:
        spans.append((start, nr))
    return nr.bit_length() - 1


def process_has_ksm_pages() -> bool:
    """Does this process map any KSM page (``ksm_merging_pages`` of /proc/self/ksm_stat, 6.1+)?

    KPF_KSM alone cannot say: Debian's 6.12.118 (lab) sets it on every anonymous page (its
    stable_page_flags() tests ``mapping & PAGE_MAPPING_KSM``, which the anon bit alone meets; so
    does every kernel from 6.10 without the 2026 fix "fs/proc: fix KPF_KSM reported for all
    anonymous pages"), this machine's 6.18.44 only on KSM pages.  Without the file, a set KPF_KSM is believed."""
    try:
        text = Path("/proc/self/ksm_stat").read_text()
    except OSError:
        return True
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "ksm_merging_pages":
            return value.strip() != "0"
    return True


def kpage_view(view: dict[str, Any], pfn: int, flags: int, observable: bool,
               spans: list[tuple[int, int]] | None = None) -> None:
    """Fill a present or zero page's ``anon_exclusive``, ``mapcount`` and ``order`` from
    /proc/kpageflags and /proc/kpagecount, or list them under ``hidden`` (without root).

    Without root the order of a PMD-mapped page is still known: only a PMD-size folio can be
    mapped by a PMD (PAGEMAP_SCAN's PAGE_IS_HUGE, already in ``thp``)."""
    if view["state"] == "zero" and not (observable and pfn):
        # the shared zero page and the huge zero page: never anonymous, never mapcounted
        view.update(anon_exclusive=False, mapcount=0, order=9 if view.get("thp") is True else 0)
        return
    if observable and pfn:
        view["anon_exclusive"] = k.kpf_anon_exclusive(flags)
        view["mapcount"] = k.kpagecount(pfn)
        if k.kpf_test(flags, "ksm") and process_has_ksm_pages():
            # KSM merges equal pages of *every* process on the machine: a KSM page's mapcount
            # counts other programs' mappings too (seen when two corpus runs overlapped)
            view["hidden"] = view.get("hidden", []) + ["mapcount"]
        view["order"] = order_of(pfn, flags, spans if spans is not None else [])
        return
    hidden = ["anon_exclusive", "mapcount"]
    if view.get("thp") is True and "thp" not in view.get("hidden", ()):
        view["order"] = (k.PMD_SIZE // k.PAGE_SIZE).bit_length() - 1
    else:
        hidden.append("order")
    if pfn and not has_anon_exclusive_bit():      # root on a kernel without the bit
        hidden = ["anon_exclusive"]
        view["mapcount"] = k.kpagecount(pfn)
        view["order"] = order_of(pfn, flags, spans if spans is not None else [])
    view["hidden"] = view.get("hidden", []) + hidden
