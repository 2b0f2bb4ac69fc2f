#!/usr/bin/env python3
"""The live book's cost to a reader, measured in headless Chromium on this machine; prints JSON.

Needs a built book (``make book``).  Serves ``_build/html`` on 127.0.0.1 with every other host
unresolvable, opens a chapter in headless Chromium driven over the DevTools protocol
(``scripts/live_check.py``), clicks its first live cell's Run twice, and reports, from the page's
own clock (``performance.now()``, real time):

* ``cold_s``: from the first Run to its output, the Web Worker, Pyodide and the wheels loaded on the way;
* ``warm_s``: a second Run of the same cell (a scenario cell reuses the worker; a Python cell's
  worker is replaced after each run, so its second Run waits for a new one to load);
* ``added_bytes``: what the live cells add to ``_build/html`` (Pyodide, the two wheels, the
  page script and style);

over ``--repeat`` fresh browser profiles (median, min, max).  Targets (issue 13): cold <= 10 s,
warm <= 1 s, added <= 20 MB.

Usage: python benchmarks/live_book.py [--page notebooks/01-why-move.html] [--repeat 3]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("live_check", ROOT / "scripts" / "live_check.py")
assert _spec is not None and _spec.loader is not None
live_check = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("live_check", live_check)
_spec.loader.exec_module(live_check)


def added_bytes(site: Path) -> dict[str, int]:
    """Bytes the live cells add to the built site, by folder of ``_static``."""
    out = {}
    for name in ("pyodide", "live"):
        folder = site / "_static" / name
        out[name] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="time the live cells in headless Chromium")
    ap.add_argument("--root", type=Path, default=ROOT / "_build" / "html")
    ap.add_argument("--page", default="notebooks/01-why-move.html")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=180.0)
    args = ap.parse_args(argv)
    if not (args.root / "_static" / "pyodide" / "pyodide.mjs").is_file():
        print("live_book: no built book with Pyodide here: run `make book`", file=sys.stderr)
        return 2
    chromium = live_check.find_chromium()
    if chromium is None:
        print("live_book: no Chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    if not 1 <= args.repeat <= 20:
        print("live_book: --repeat must be 1..20", file=sys.stderr)
        return 2
    colds, warms, errors = [], [], []
    server = live_check.serve(args.root)
    try:
        for _ in range(args.repeat):
            with live_check.Browser(chromium) as browser:     # a fresh profile: nothing cached
                try:
                    page = live_check.LivePage(browser.new_page(), server, args.page)
                    runs = [page.run(0, args.timeout) for _ in range(2)]
                except live_check.CdpError as err:
                    errors.append(str(err))
                    continue
            if all(r.get("ok") for r in runs):
                colds.append(runs[0]["total_ms"] / 1000)
                warms.append(runs[1]["total_ms"] / 1000)
            else:
                errors.append(str(runs)[:200])
    finally:
        server.close()
    sizes = added_bytes(args.root)

    def stats(xs: list[float]) -> dict[str, float] | None:
        return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3),
                "max": round(max(xs), 3)} if xs else None

    print(json.dumps({"page": args.page, "runs": len(colds), "errors": errors,
                      "cold_s": stats(colds), "warm_s": stats(warms),
                      "added_bytes": sum(sizes.values()), "added_by_folder": sizes,
                      "failed_requests": server.failed}, indent=1))
    return 0 if colds and not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
