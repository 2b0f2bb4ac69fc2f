"""Colours, names and hatches of every uffdsim picture, without matplotlib.

The matplotlib figures (:mod:`.style`, :mod:`.space`) and the SVG pictures of the live book
(:mod:`.svg`) both read these, so the two show the same colours and labels.  The palette is
Okabe and Ito's, which stays distinguishable under the common forms of colour blindness.
"""
from __future__ import annotations

#: Okabe-Ito colours
BLACK, ORANGE, SKY, GREEN, YELLOW, BLUE, VERMILLION, PURPLE = (
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
GREY, LIGHT = "#BBBBBB", "#F2F2F2"

#: fill colour of a folio by kind (see uffdsim.snapshot.FOLIO_KINDS)
FOLIO_COLOURS = {"exclusive": SKY, "shared": ORANGE, "ksm": PURPLE, "zero": GREY,
                 "file": GREEN, "unmapped": "#FFFFFF"}
FOLIO_NAMES = {"exclusive": "anon-exclusive", "shared": "COW-shared (not exclusive)", "ksm": "KSM page",
               "zero": "zero page", "file": "page cache (file)", "unmapped": "unmapped, still held"}
HATCH_PINNED, HATCH_SWAPCACHE, HATCH_THP = "xxx", "...", "///"
SWAP_COLOUR = YELLOW
HIGHLIGHT = VERMILLION       #: what a step changed
ERROR, SUCCESS = VERMILLION, GREEN
#: the same two as backgrounds of white text (badges): darkened to WCAG AA contrast, 4.5:1 or more
#: (white on Okabe-Ito's own green is 3.4:1, on its vermillion 3.9:1)
TEXT_ON_ERROR, TEXT_ON_SUCCESS = "#B34700", "#00785A"
LANE_COLOURS = (BLUE, ORANGE, GREEN, PURPLE)
#: line styles and markers for series, so that they differ without colour too
SERIES = ((BLUE, "o", "-"), (VERMILLION, "s", "--"), (GREEN, "^", "-."), (ORANGE, "D", ":"),
          (PURPLE, "v", "-"), (SKY, "P", "--"), (BLACK, "X", "-."))


def wrap(text: str, width: int) -> str:
    """Break ``text`` into lines of at most ``width`` characters at spaces (long words kept whole)."""
    import textwrap
    return "\n".join(textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)) or text
