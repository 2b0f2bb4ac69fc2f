"""Argument checks at the Python API boundary: what a C caller could not even pass is refused here.

An address or a length is an ``unsigned long`` in the kernel: a negative Python integer is
converted the way C converts it (``-4096`` becomes ``2**64 - 4096``), so the kernel's own checks
(``validate_range()``, ``do_vmi_munmap()``...) decide the errno.  What C could not pass at all (a
float, ``None``, a number above ``2**64 - 1``, a byte value of 256) raises :class:`ArgTypeError` or
:class:`ArgValueError`: one line naming the argument.
"""
from __future__ import annotations

from typing import Any, Iterable

U64_MAX = (1 << 64) - 1


class ArgTypeError(TypeError):
    """An argument of the wrong type (one line naming it)."""


class ArgValueError(ValueError):
    """An argument no C caller could pass (one line naming it)."""


def ulong(value: Any, name: str) -> int:
    """An ``unsigned long`` argument: negative integers wrap as in C, non-integers are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgTypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r:.60}")
    if value > U64_MAX or value < -(1 << 63):
        raise ArgValueError(f"{name}: {value:#x} does not fit in 64 bits")
    return value & U64_MAX


def byte(value: Any, name: str = "value") -> int:
    """A byte value 0..255 (what every byte of a page is filled with)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgTypeError(f"{name}: expected an integer 0..255, got {type(value).__name__} {value!r:.60}")
    if not 0 <= value <= 255:
        raise ArgValueError(f"{name}: expected a byte value 0..255, got {value}")
    return value


def flag(value: Any, name: str) -> bool:
    """A true/false argument."""
    if not isinstance(value, bool):
        raise ArgTypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r:.60}")
    return value


def choice(value: Any, options: Iterable[str], name: str) -> str:
    """One of ``options``."""
    opts = tuple(options)
    if not isinstance(value, str) or value not in opts:
        raise ArgValueError(f"{name}: expected one of {', '.join(opts)}, got {value!r:.60}")
    return value


def names(value: Any, name: str) -> list[str] | int:
    """Mode or feature names: a list of names, one name as a string, or the raw integer bits."""
    if isinstance(value, bool):
        raise ArgTypeError(f"{name}: expected names or an integer, got {value!r}")
    if isinstance(value, int):
        return ulong(value, name)
    if isinstance(value, str):
        return [value]
    try:
        items = list(value)
    except TypeError:
        raise ArgTypeError(f"{name}: expected a list of names, got {type(value).__name__}") from None
    for item in items:
        if not isinstance(item, str):
            raise ArgTypeError(f"{name}: expected names (strings), got {item!r:.60}")
    return items
