"""The book's ``{claim}`` citations, read with the MyST Markdown parser the book is built with.

A page is a notebook's Markdown cells (``notebooks/*.ipynb``, each cell parsed on its own, as
MyST-NB does) or a MyST Markdown file (``book/*.md``).  The text is tokenised by markdown-it-py
with the plugins and options Jupyter Book 1 gives MyST (:func:`parser`), so what MyST treats as
code (fenced and indented blocks, ``inline code``, math, raw HTML, comments) never cites, and a
citation is found wherever MyST would render the role: paragraphs, lists, tables, footnotes, and
the bodies and titles of directives (admonitions and dropdowns of any fence length, glossaries),
which MyST parses again as Markdown and so does this module, up to :data:`MAX_DEPTH` levels.
Directives whose body is not Markdown (:data:`LITERAL_DIRECTIVES`) are skipped whole.

A role's text is ``scenario`` or ``scenario#STEP`` (STEP: a 0-based step index or a step's
``name:``).  Work is linear in the page (each directive level parses its body once more), and a
page is read in chunks up to :data:`MAX_PAGE_BYTES`; anything else (not a regular file, not UTF-8,
a notebook that is not a notebook) raises :class:`PageError` with one line naming the page.

markdown-it-py and mdit-py-plugins are imported on first use: the ``uffdsim`` package itself
needs only PyYAML (``pip install 'uffdsim[notebooks]'`` brings them).
"""
from __future__ import annotations

import bisect
import json
import os
import re
import stat
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from .boundedread import read_at_most

#: a page (notebook or Markdown file) is at most this many bytes
MAX_PAGE_BYTES = 16 << 20
#: the Markdown of one page (a notebook's Markdown cells together) is at most this many characters
MAX_MARKDOWN = 256 << 10
#: a notebook has at most this many Markdown cells (and ten times as many cells in all)
MAX_CELLS = 10_000
#: one paragraph, heading, table cell or directive title is at most this many characters (parts of
#: markdown-it's inline parser grow with the square of a paragraph's length; the book's longest
#: paragraph has about 1,600)
MAX_PARAGRAPH = 8192
#: directives inside directives (each level is parsed once more), at most this deep
MAX_DEPTH = 16
#: an erratum's text given as the context of its "Shown by:" badges, at most this many characters
MAX_CONTEXT = 2000
#: a link reference definition spans at most this many lines (a longer one is read as a paragraph)
REFERENCE_LINES = 4
#: directives whose body is not Markdown: their content never cites (the role is not parsed there)
LITERAL_DIRECTIVES = frozenset({
    "code", "code-block", "sourcecode", "code-cell", "literalinclude", "include", "live-cell",
    "math", "raw", "eval-rst", "eval-rest", "mermaid", "graphviz", "toctree", "tableofcontents",
    "bibliography", "csv-table", "highlight", "parsed-literal", "glue", "glue:any", "glue:text",
    "glue:figure", "glue:math", "glue:md"})
#: what pip should install when the parser is missing
NEEDS = "markdown-it-py and mdit-py-plugins (pip install 'uffdsim[notebooks]')"

_DIRECTIVE = re.compile(r"^\{([^}\s]+)\}\s*(.*)$", re.S)
_ROLE_NAME = re.compile(r"\{([a-zA-Z0-9_\-+:]+)\}")
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+")


class PageError(ValueError):
    """A page that cannot be read as a book page: the message is one line naming it."""


class _Oversized(Exception):
    """An inline token longer than :data:`MAX_PARAGRAPH` (raised by the parser, reported by
    :func:`_units` with the page and line)."""

    def __init__(self, line: int, size: int) -> None:
        super().__init__(line, size)
        self.line, self.size = line, size


class ParserMissing(ImportError):
    """markdown-it-py or mdit-py-plugins is not installed."""


@dataclass(frozen=True)
class Citation:
    """One ``{claim}`` role: where it is, which scenario (and step) it cites, and its sentence."""

    page: str          #: the page's path relative to the root (``notebooks/05-errors.ipynb``)
    where: str         #: ``cell 29`` (a notebook's 0-based cell index) or ``line 12``
    scenario: str
    sentence: str      #: the sentence that carries it, roles and Markdown stripped
    step: str | None = None   #: the STEP of ``scenario#STEP`` (an index or a step name), or None
    context: str = ""         #: the table row or glossary term around it, if any

    @property
    def target(self) -> str:
        """The role's text: ``scenario`` or ``scenario#STEP``."""
        return self.scenario if self.step is None else f"{self.scenario}#{self.step}"


def split_target(text: str) -> tuple[str, str | None]:
    """``scenario#STEP`` -> (scenario, STEP); ``scenario`` -> (scenario, None)."""
    name, sep, step = text.strip().partition("#")
    return name.strip(), (step.strip() if sep else None)


# -- the parser ---------------------------------------------------------------------------------

def _find_ticks(state: Any, ticks: int, start: int) -> int:
    """The first run of ``ticks`` backticks at or after ``start`` in the inline source (cached, so
    that a paragraph of many roles is scanned once, not once per role)."""
    src = state.src
    cache = state.env.get("_claims_ticks")
    if cache is None or cache[0] is not src:
        cache = state.env["_claims_ticks"] = (src, {})
    known = cache[1].get(ticks)
    if known is not None:
        since, found = known
        if since <= start and (found < 0 or start <= found):
            return found
    found = src.find("`" * ticks, start)
    cache[1][ticks] = (start, found)
    return found


def _myst_role(state: Any, silent: bool) -> bool:
    """mdit_py_plugins' ``myst_role`` rule with the same result, in time linear in the paragraph
    (the plugin copies the rest of the paragraph at every ``{``)."""
    src, pos = state.src, state.pos
    if src[pos] != "{":
        return False
    match = _ROLE_NAME.match(src, pos)
    if not match:
        return False
    start = end = match.end()
    while end < len(src) and src[end] == "`":
        end += 1
    ticks = end - start
    if not ticks or end >= len(src):
        return False
    close = _find_ticks(state, ticks, end + 1)
    if close < 0:
        return False
    if not silent:
        token = state.push("myst_role", "", 0)
        token.meta = {"name": match.group(1), "pos": pos}
        token.content = src[end:close].replace("\n", " ")
    state.pos = close + ticks
    return True


def _fragments_join(state: Any) -> None:
    """markdown-it's ``fragments_join`` (merge adjacent text tokens, recompute levels) with each
    run of text joined once: the original concatenates pairwise, quadratic in a run's length."""
    level = 0
    out: list[Any] = []
    run: list[str] = []
    for tok in state.tokens:
        if tok.nesting < 0:
            level -= 1
        tok.level = level
        if tok.nesting > 0:
            level += 1
        if tok.type == "text" and out and out[-1].type == "text":
            run.append(tok.content)
            continue
        if run:
            out[-1].content = "".join([out[-1].content, *run])
            run = []
        out.append(tok)
    if run:
        out[-1].content = "".join([out[-1].content, *run])
    state.tokens[:] = out


@lru_cache(maxsize=1)
def parser() -> Any:
    """A markdown-it parser configured as MyST-Parser configures it for this book's build
    (``myst_parser.parsers.mdit.create_md_parser`` with Jupyter Book 1's extensions colon_fence,
    dollarmath, substitution and tasklist, and ``dmath_double_inline`` off as the build prints it;
    linkify only turns URLs in text into links and is left out)."""
    try:
        from markdown_it import MarkdownIt
        from mdit_py_plugins.colon_fence import colon_fence_plugin
        from mdit_py_plugins.dollarmath import dollarmath_plugin
        from mdit_py_plugins.footnote import footnote_plugin
        from mdit_py_plugins.front_matter import front_matter_plugin
        from mdit_py_plugins.myst_blocks import myst_block_plugin
        from mdit_py_plugins.myst_role import myst_role_plugin
        from mdit_py_plugins.substitution import substitution_plugin
        from mdit_py_plugins.tasklists import tasklists_plugin
    except ImportError as err:
        raise ParserMissing(f"reading the book needs {NEEDS}; missing: {err.name}") from None
    md = (MarkdownIt("commonmark").enable("table").use(front_matter_plugin).use(myst_block_plugin)
          .use(myst_role_plugin).use(footnote_plugin).disable("footnote_inline").disable("footnote_tail")
          .use(dollarmath_plugin, allow_labels=True, allow_space=True, allow_digits=True, double_inline=False)
          .use(colon_fence_plugin).use(substitution_plugin).use(tasklists_plugin))
    md.inline.ruler.at("myst_role", _myst_role)
    md.inline.ruler2.at("fragments_join", _fragments_join)
    reference = md.block.ruler.__rules__[md.block.ruler.__find__("reference")].fn

    def bounded_reference(state: Any, start: int, end: int, silent: bool) -> bool:
        """markdown-it's link reference definition rule, looking at most :data:`REFERENCE_LINES`
        lines ahead (it reads to the paragraph's end for each one: quadratic in a list of them)."""
        last = state.lineMax                     # the rule reads up to state.lineMax, not ``end``
        state.lineMax = min(last, start + REFERENCE_LINES)
        try:
            return bool(reference(state, start, state.lineMax, silent))
        finally:
            state.lineMax = last

    md.block.ruler.at("reference", bounded_reference)
    inline = md.core.ruler.__rules__[md.core.ruler.__find__("inline")].fn

    def bounded_inline(state: Any) -> None:
        """markdown-it's inline pass, refusing a paragraph longer than :data:`MAX_PARAGRAPH`."""
        for tok in state.tokens:
            if tok.type == "inline" and len(tok.content) > MAX_PARAGRAPH:
                raise _Oversized(tok.map[0] if tok.map else 0, len(tok.content))
        inline(state)

    md.core.ruler.at("inline", bounded_inline)
    return md


# -- reading tokens -----------------------------------------------------------------------------

@dataclass
class _Unit:
    """One inline token (a paragraph, a heading, a table cell, a term) and where it is."""

    token: Any
    line: int            #: 0-based line of its first line in the page (or cell)
    row: tuple[int, int, int] | None   #: the table row it belongs to (unique in the page), or None
    context: str = ""


def _split_options(body: str) -> tuple[str, int]:
    """A directive's body without its options, as MyST reads them (leading lines starting with
    ``:``, or a block from a first line ``---`` to the next ``---``); returns the body and the
    number of lines removed."""
    lines = body.split("\n")
    n = 0
    if body.startswith("---"):
        n = len(lines)
        for k in range(1, len(lines)):
            if lines[k].startswith("---"):
                n = k + 1
                break
    else:
        while n < len(lines) and lines[n].lstrip().startswith(":"):
            n += 1
    return "\n".join(lines[n:]), n


def _glossary(body: str) -> Iterator[tuple[list[tuple[str, int]], str, int]]:
    """A glossary's entries: (terms with their line, the definition dedented, its first line)."""
    terms: list[tuple[str, int]] = []
    definition: list[str] = []
    first = 0
    for n, text in enumerate(body.split("\n")):
        if text.strip() and not text[0].isspace():
            if definition:
                yield terms, textwrap.dedent("\n".join(definition)), first
                terms, definition = [], []
            terms.append((text.strip(), n))
        elif terms:
            if not definition:
                first = n
            definition.append(text)
    if terms:
        yield terms, textwrap.dedent("\n".join(definition)), first


def _inline(text: str, where: str, line: int) -> Any:
    """One line of inline Markdown (a directive's title, a glossary term) as an inline token."""
    if len(text) > MAX_PARAGRAPH:
        raise PageError(f"{where}: line {line + 1}: a directive title of {len(text)} characters, "
                        f"more than the limit of {MAX_PARAGRAPH}")
    return parser().parseInline(text, {})[0]


def _units(text: str, line0: int, depth: int, where: str, context: str = "") -> Iterator[_Unit]:
    """Every inline token MyST would render from ``text`` (directive bodies included)."""
    if depth > MAX_DEPTH:
        raise PageError(f"{where}: directives nested more than {MAX_DEPTH} deep (limit)")
    md = parser()
    try:
        tokens = md.parse(text, {})
    except _Oversized as err:
        raise PageError(f"{where}: line {line0 + err.line + 1}: a paragraph of {err.size} characters, "
                        f"more than the limit of {MAX_PARAGRAPH}") from None
    row: tuple[int, int, int] | None = None
    for n, tok in enumerate(tokens):
        if tok.type == "tr_open":
            row = (line0, depth, n)
        elif tok.type == "tr_close":
            row = None
        elif tok.type == "inline":
            yield _Unit(tok, line0 + (tok.map[0] if tok.map else 0), row, context)
        elif tok.type in ("fence", "colon_fence"):
            found = _DIRECTIVE.match(tok.info.strip())
            if not found or found.group(1) in LITERAL_DIRECTIVES:
                continue                              # code, or a directive whose body is not Markdown
            name, argument = found.group(1), found.group(2).strip()
            at = line0 + (tok.map[0] if tok.map else 0)
            if argument:                              # a title: parsed as inline Markdown
                yield _Unit(_inline(argument, where, at), at, None, context)
            body, skipped = _split_options(tok.content)
            if name == "glossary":
                for terms, definition, first in _glossary(body):
                    term = "; ".join(t for t, _ in terms)
                    for t, k in terms:
                        yield _Unit(_inline(t, where, at + 1 + skipped + k), at + 1 + skipped + k, None, term)
                    yield from _units(definition, at + 1 + skipped + first, depth + 1, where, term)
            else:
                yield from _units(body, at + 1 + skipped, depth + 1, where, context)


def _plain_inline(token: Any) -> tuple[str, list[tuple[int, str, int]], set[int]]:
    """An inline token as plain text, its claim roles (offset, text, line offset), and the offsets
    where code or a role starts (a sentence may start there)."""
    parts: list[str] = []
    size = 0
    claims: list[tuple[int, str, int]] = []
    starts: set[int] = set()
    source, line, seen = token.content, 0, 0
    for child in token.children or ():
        kind = child.type
        text = ""
        if kind == "text":
            text = child.content
        elif kind in ("softbreak", "hardbreak"):
            text = " "
        elif kind in ("code_inline", "math_inline", "math_inline_double"):
            starts.add(size)
            text = child.content
        elif kind == "myst_role":
            if child.meta.get("name") == "claim":
                pos = child.meta.get("pos", seen)
                line, seen = line + source.count("\n", seen, pos), max(seen, pos)
                claims.append((size, child.content, line))
                continue
            starts.add(size)
            text = re.sub(r"\s*<[^<>]*>$", "", child.content)     # {term}`text <target>`
        if text:
            parts.append(text)
            size += len(text)
    return "".join(parts), claims, starts


def _sentence_spans(plain: str, starts: set[int]) -> list[int]:
    """Where each sentence of ``plain`` starts (a sentence ends with . ! or ? and white space,
    before a capital, a digit, a quote, a bracket, code or a role)."""
    out = [0]
    for m in _SENTENCE_END.finditer(plain):
        nxt = m.end()
        if nxt < len(plain) and (plain[nxt].isupper() or plain[nxt].isdigit() or plain[nxt] in "\"'(\u201c"
                                 or nxt in starts):
            out.append(nxt)
    return out


#: a sentence shown is at most this long (a page of one huge "sentence" stays cheap to report)
MAX_SENTENCE = 1000


def _tidy(text: str) -> str:
    """One line, no space before punctuation, at most :data:`MAX_SENTENCE` characters."""
    text = " ".join(text[:4 * MAX_SENTENCE].split())
    text = re.sub(r"\s+([.,;:!?)])", r"\1", text).strip(" -")
    return text if len(text) <= MAX_SENTENCE else text[:MAX_SENTENCE - 1] + "\u2026"


def citations_in_text(text: str, page: str, where: str, first_line: int | None = None) -> list[Citation]:
    """The citations in one MyST Markdown text (a notebook cell, or a page when ``first_line`` is
    given: then ``where`` is each citation's ``line N``, counted from ``first_line``)."""
    units = list(_units(text, 0, 0, f"{page}{': ' + where if where else ''}"))
    cells: dict[tuple[int, int, int], list[str]] = {}
    for u in units:
        if u.row is not None:
            cells.setdefault(u.row, []).append(_tidy(_plain_inline(u.token)[0]))
    rows = {row: _tidy(" | ".join(texts[:50])) for row, texts in cells.items()}
    out: list[Citation] = []
    for u in units:
        plain, claims, starts = _plain_inline(u.token)
        if not claims:
            continue
        spans = _sentence_spans(plain, starts) + [len(plain)]
        tidy: dict[int, str] = {}                            # each sentence tidied once
        for offset, target, line in claims:
            k = min(bisect.bisect_right(spans, offset) - 1, len(spans) - 2)
            if k not in tidy:
                tidy[k] = _tidy(plain[spans[k]:spans[k + 1]])
            if not tidy[k] and k > 0 and k - 1 not in tidy:  # a role right after a sentence's end
                tidy[k - 1] = _tidy(plain[spans[k - 1]:spans[k]])
            sentence = tidy[k] or (tidy[k - 1] if k > 0 else "")
            scenario, step = split_target(target)
            at = where if first_line is None else f"line {first_line + u.line + line}"
            context = rows.get(u.row, "") if u.row is not None else u.context
            if not context and sentence.startswith("Shown by"):    # an erratum: what it shows is the entry
                context = _tidy(plain)[:MAX_CONTEXT]
            out.append(Citation(page, at, scenario, sentence or context, step, context))
    return out


# -- reading pages ------------------------------------------------------------------------------

def read_page(path: Path, limit: int = MAX_PAGE_BYTES) -> str:
    """A page's text: a regular file of at most ``limit`` bytes of UTF-8 without NUL, read in chunks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise PageError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise PageError(f"{path}: a directory, not a page (pass notebooks or Markdown files, or --root DIR)")
        if not stat.S_ISREG(mode):
            raise PageError(f"{path}: not a regular file")
        data = read_at_most(fd, limit)
    except OSError as err:
        raise PageError(f"{path}: cannot read: {err.strerror or err}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise PageError(f"{path}: larger than {limit} bytes (limit for a book page)")
    nul = data.find(b"\0")
    if nul >= 0:
        raise PageError(f"{path}: byte {nul}: a NUL byte; a page is UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PageError(f"{path}: byte {err.start}: not UTF-8 text ({err.reason})") from None


def markdown_cells(path: Path, text: str) -> list[tuple[int, str]]:
    """A notebook's Markdown cells as (index, source); PageError if it is not a notebook."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise PageError(f"{path}: not a notebook (JSON nested too deeply)") from None
    except ValueError as err:
        raise PageError(f"{path}: not a notebook ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(doc, dict):
        raise PageError(f"{path}: not a notebook (expected a JSON object, got {type(doc).__name__})")
    cells = doc.get("cells", [])
    if not isinstance(cells, list):
        raise PageError(f"{path}: not a notebook ('cells' is {type(cells).__name__}, not a list)")
    if len(cells) > 10 * MAX_CELLS:
        raise PageError(f"{path}: {len(cells)} cells, more than the limit of {10 * MAX_CELLS}")
    out = []
    for n, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise PageError(f"{path}: cell {n}: not a notebook cell (a {type(cell).__name__}, not an object)")
        if cell.get("cell_type") != "markdown":
            continue
        src = cell.get("source", "")
        if isinstance(src, list) and all(isinstance(s, str) for s in src):
            src = "".join(src)
        if not isinstance(src, str):
            raise PageError(f"{path}: cell {n}: 'source' is not text (a string or a list of strings)")
        out.append((n, src))
        if len(out) > MAX_CELLS:
            raise PageError(f"{path}: more than {MAX_CELLS} Markdown cells (limit for a book page)")
    return out


def page_name(path: Path, root: Path) -> str:
    """The page's path relative to the root (as given when outside it)."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except (ValueError, OSError, RuntimeError):
        return str(path)


def citations_in_file(path: Path, root: Path) -> list[Citation]:
    """The citations on one page: a notebook's Markdown cells, or a Markdown file."""
    page = page_name(path, root)
    text = read_page(path)
    cells = markdown_cells(path, text) if path.suffix == ".ipynb" else [(-1, text)]
    if sum(len(src) for _, src in cells) > MAX_MARKDOWN:
        raise PageError(f"{path}: more than {MAX_MARKDOWN} characters of Markdown (limit for a book page)")
    if path.suffix != ".ipynb":
        return citations_in_text(text, page, "", first_line=1)
    return [c for n, src in cells for c in citations_in_text(src, page, f"cell {n}")]
