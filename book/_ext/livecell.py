"""The ``live-cell`` directive: an editable scenario or snippet that runs in the reader's browser.

In a notebook's Markdown cell or a book page::

    ```{live-cell} yaml
    :caption: Move a page that a child process shares
    name: my-experiment
    ...
    ```

The argument is the kind, ``yaml`` (a scenario in the corpus format) or ``python`` (a snippet
against ``uffdsim``).  The page shows the source in an editable box with Run and Reset; Run loads
Pyodide (vendored under ``_static/pyodide``, fetched only on the first Run) with the uffdsim and
PyYAML wheels (``_static/live/wheels``, built by ``scripts/build_live_wheels.py``) and shows what
:func:`uffdsim.live.run_cell` returns: the same text a notebook prints, and an SVG picture.
Nothing is loaded from another host.
"""
from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive, directives

HERE = Path(__file__).resolve().parent
KINDS = ("yaml", "python")


class LiveCell(Directive):
    """``{live-cell} yaml|python``: an editable, runnable cell (see the module docstring)."""

    required_arguments = 1
    has_content = True
    option_spec = {"caption": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        kind = self.arguments[0].strip()
        if kind not in KINDS:
            raise self.error(f"live-cell: kind must be one of {', '.join(KINDS)}, not {kind!r}")
        source = "\n".join(self.content).rstrip() + "\n"
        if not source.strip():
            raise self.error("live-cell: the cell is empty")
        env = self.state.document.settings.env
        serial = env.new_serialno("live-cell")
        caption = self.options.get("caption", "Live cell")
        rows = min(max(source.count("\n") + 1, 4), 30)
        html = (
            f'<div class="uffd-live" data-kind="{kind}" id="live-{env.docname.replace("/", "-")}-{serial}">'
            f'<div class="uffd-live-head"><span class="uffd-live-caption">{escape(caption)}</span>'
            f'<span class="uffd-live-kind">{"scenario (YAML)" if kind == "yaml" else "Python"}</span></div>'
            f'<textarea class="uffd-live-src" spellcheck="false" autocomplete="off" rows="{rows}" '
            f'aria-label="{escape(caption)}: editable {kind} source">{escape(source)}</textarea>'
            f'<div class="uffd-live-bar"><button type="button" class="uffd-live-run">Run</button>'
            f'<button type="button" class="uffd-live-reset">Reset</button>'
            f'<span class="uffd-live-status" role="status">Runs in your browser (Pyodide, about 14 MB, '
            f'loaded on the first Run). Shift+Enter runs.</span></div>'
            f'<progress class="uffd-live-progress" max="100" value="0" hidden></progress>'
            f'<pre class="uffd-live-out" hidden></pre><div class="uffd-live-svg" hidden></div>'
            f'</div>')
        return [nodes.raw("", html, format="html")]


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("live-cell", LiveCell)
    app.connect("builder-inited", _add_static)
    app.add_js_file("live/live.js", loading_method="defer")
    app.add_css_file("live/live.css")
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}


def _add_static(app: Any) -> None:
    """Ship the page script and style (book/_ext/live_static) and the wheels (_live/static)."""
    root = Path(app.confdir)
    for folder in (HERE / "live_static", root / "_live" / "static"):
        if str(folder) not in app.config.html_static_path:
            app.config.html_static_path.append(str(folder))
