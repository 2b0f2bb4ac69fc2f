"""How the claims reader's time grows with a page: hostile Markdown at two sizes, as JSON.

Each case is a page built from one kind of paragraph (kept under the paragraph limit) repeated up
to ``--size`` characters and to a quarter of it; ``ratio`` is the time of the big page over the
small one (about 4 when the work is linear in the page).  The cases are those issue 19 found
quadratic (unclosed fences, many citations in a paragraph) and the ones markdown-it-py's own
rules make slow (brackets, emphasis, raw HTML, link reference definitions, tables, glossaries,
nested directives).

    python benchmarks/claims_scaling.py [--size 262144]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uffdsim.citations import MAX_MARKDOWN, MAX_PARAGRAPH, PageError, citations_in_text  # noqa: E402

P = MAX_PARAGRAPH - 200
CASES = {
    "unclosed fences": "```\n" * (P // 4),
    "citations in one paragraph": "A {claim}`move-after-fork` " * (P // 27),
    "unclosed roles": "{a}``x " * (P // 7),
    "brackets": "[" * P,
    "emphasis": "*a " * (P // 3),
    "raw html": "<a " * (P // 3),
    "link reference definitions": "[a]: b\n" * (P // 7),
    "links with emphasis": "[*a](b) " * (P // 8),
    "table": "| a | b |\n|---|---|\n" + "| {claim}`x` | y |\n" * (P // 18),
    "glossary": "```{glossary}\n" + "T\n  d {claim}`x`.\n" * (P // 16) + "```\n",
    "nested directives": "".join(":" * (20 - k) + "{note}\nx {claim}`y`\n" for k in range(16)),
}


def timed(text: str) -> tuple[float, int | str]:
    start = time.perf_counter()
    try:
        found: int | str = len(citations_in_text(text, "page.md", "", first_line=1))
    except PageError as err:
        found = f"refused: {err}"
    return time.perf_counter() - start, found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=MAX_MARKDOWN, help="the big page's size in characters")
    args = ap.parse_args(argv)
    out = {}
    for name, para in CASES.items():
        block = para.rstrip("\n") + "\n\n"
        small, big = (block * max(1, size // len(block)) for size in (args.size // 4, args.size))
        t_small, _ = timed(small)
        t_big, found = timed(big)
        out[name] = {"chars": len(big), "seconds": round(t_big, 3), "seconds_quarter": round(t_small, 3),
                     "ratio": round(t_big / max(t_small, 1e-6), 2), "citations": found}
    print(json.dumps({"size": args.size, "max_paragraph": MAX_PARAGRAPH, "cases": out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
