"""Reading a file of unknown size without trusting it: at most ``limit + 1`` bytes, in chunks.

The scenario loader and the claims checker both read files a reader names; one byte past the
limit is enough to say "too large" without reading /dev/zero or a 10 GB file into memory.
"""
from __future__ import annotations

import os

CHUNK = 1 << 20


def read_at_most(fd: int, limit: int, chunk: int = CHUNK) -> bytes:
    """Up to ``limit + 1`` bytes of ``fd`` (more than ``limit`` means the file is too large); OSError passes."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        data = os.read(fd, min(chunk, limit + 1 - size))
        if not data:
            break
        chunks.append(data)
        size += len(data)
    return b"".join(chunks)
