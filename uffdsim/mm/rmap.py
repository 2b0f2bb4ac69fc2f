"""Mapping accounting (mm/rmap.c): add and remove mappings of folios, keeping mapcounts right."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .folio import Folio
from .pagetable import HugePmd, MarkerPte, PresentPte, SwapPte

if TYPE_CHECKING:
    from .machine import Machine


def folio_add_new_anon_rmap(folio: Folio, idx: int | None = None) -> None:
    """folio_add_new_anon_rmap(): a fresh anonymous folio, mapped once and exclusive.

    ``idx`` is the page mapped by a PTE; ``None`` maps the whole folio with a PMD.
    """
    if idx is None:
        folio.entire_mapcount += 1
        folio.exclusive = [True] * folio.nr
    else:
        folio.mapcount[idx] += 1
        folio.exclusive[idx] = True


def folio_add_rmap_pte(folio: Folio, idx: int) -> None:
    """folio_add_anon_rmap_pte()/folio_add_file_rmap_pte() for a page that is already shared."""
    if not folio.special:
        folio.mapcount[idx] += 1


def folio_add_rmap_pmd(folio: Folio) -> None:
    """folio_add_anon_rmap_pmd(): one more PMD mapping of the whole folio."""
    if not folio.special:
        folio.entire_mapcount += 1


def folio_remove_rmap_pte(machine: "Machine", folio: Folio, idx: int) -> None:
    """folio_remove_rmap_pte(), then folio_put(): free the folio when nothing references it."""
    if folio.special:
        return
    folio.mapcount[idx] -= 1
    if folio.page_mapcount(idx) == 0 and not folio.large:
        # a page of a large folio keeps its PageAnonExclusive flag when unmapped (the kernel clears it
        # only when it replaces the mapping, e.g. by a swap entry): the move's check of the folio's
        # first page still sees it (scenario mthp-dontneed-head-then-move)
        folio.exclusive[idx] = False
    machine.release_folio(folio)


def folio_remove_rmap_pmd(machine: "Machine", folio: Folio) -> None:
    """folio_remove_rmap_pmd(), then folio_put()."""
    if folio.special:
        return
    folio.entire_mapcount -= 1
    if folio.entire_mapcount == 0:
        folio.exclusive = [folio.exclusive[i] and folio.mapcount[i] > 0 for i in range(folio.nr)]
    machine.release_folio(folio)


def zap_pte(machine: "Machine", pte: PresentPte | SwapPte | MarkerPte) -> None:
    """zap_present_ptes()/zap_nonpresent_ptes() for one entry: drop what it references."""
    if isinstance(pte, PresentPte):
        folio_remove_rmap_pte(machine, pte.folio, pte.idx)
    elif isinstance(pte, SwapPte):
        machine.swap_free(pte.entry)


def zap_huge_pmd(machine: "Machine", pmd: HugePmd) -> None:
    """zap_huge_pmd(): drop a PMD mapping (and its deposited page table)."""
    folio_remove_rmap_pmd(machine, pmd.folio)
