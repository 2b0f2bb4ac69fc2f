"""Untrusted text made safe for a terminal: what a scenario file or a command line said, printed escaped.

A newline in a YAML key or a ``frame:`` label must not forge a second output line (a fake
"Traceback"), and an escape sequence (``\\x1b[2J``) must not reach the terminal.
"""
from __future__ import annotations


def clean(text: str) -> str:
    """``text`` with every character that is not printable (controls, newlines, bidi overrides) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
