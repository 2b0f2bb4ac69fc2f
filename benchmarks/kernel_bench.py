"""Thin wrapper: ``python benchmarks/kernel_bench.py [ARGS]`` = ``python -m uffdsim bench kernel --json [ARGS]``.

Prints the JSON document of :mod:`uffdsim.backends.kernel.bench` (MOVE per page, per 2 MiB and
of THP, COPY+DONTNEED per page and per 2 MiB, memcpy; ns per 4 KiB page and GiB/s, medians).
"""
from __future__ import annotations

import sys

from uffdsim.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "kernel", "--json", *sys.argv[1:]]))
