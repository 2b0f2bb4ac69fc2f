"""The ``live-cell`` directive: an editable scenario or snippet that runs in the reader's browser.

In a notebook's Markdown cell or a book page::

    ```{live-cell} yaml
    :caption: Move a page that a child process shares
    name: my-experiment
    ...
    ```

The argument is the kind, ``yaml`` (a scenario in the corpus format) or ``python`` (a snippet
against ``uffdsim``).  The page shows the source in an editable box with Run, Stop and Reset;
Run starts a Web Worker (``live/worker.js``) that loads Pyodide (vendored under ``_static/pyodide``, fetched only on the
first Run) with the uffdsim and PyYAML wheels (``_static/live/wheels``, built by
``scripts/build_live_wheels.py``) and shows what :func:`uffdsim.live.run_cell` returns: the same
text a notebook prints, and an SVG picture.  A run is stopped after
:data:`uffdsim.live.TIME_LIMIT_S` seconds (the cell says so).  Nothing is loaded from another host.
"""
from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive, directives

from uffdsim.live import MAX_OUTPUT, TIME_LIMIT_S

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
        cid = f'live-{env.docname.replace("/", "-")}-{serial}'
        kind_name = "scenario (YAML)" if kind == "yaml" else "Python"
        limits = (f"A run stops after {TIME_LIMIT_S} s and shows at most {MAX_OUTPUT // 1024} K characters of output. "
                  "Shift+Enter runs, Escape stops.")
        html = (
            f'<div class="uffd-live" data-kind="{kind}" data-time-limit="{TIME_LIMIT_S}" id="{cid}" '
            f'role="group" aria-labelledby="{cid}-caption">'
            f'<div class="uffd-live-head"><span class="uffd-live-caption" id="{cid}-caption">{escape(caption)}</span>'
            f'<span class="uffd-live-kind">{kind_name}, runs in your browser</span></div>'
            f'<textarea class="uffd-live-src" spellcheck="false" autocomplete="off" rows="{rows}" '
            f'aria-label="{escape(caption)}: editable {kind_name} source" aria-describedby="{cid}-keys">'
            f'{escape(source)}</textarea>'
            f'<div class="uffd-live-bar">'
            f'<button type="button" class="uffd-live-run" aria-describedby="{cid}-keys">Run</button>'
            f'<button type="button" class="uffd-live-stop" aria-disabled="true">Stop</button>'
            f'<button type="button" class="uffd-live-reset">Reset</button>'
            f'<span class="uffd-live-status" role="status">Python (Pyodide, about 14 MB) loads on the first Run.'
            f'</span></div>'
            f'<p class="uffd-live-keys" id="{cid}-keys">{limits}</p>'
            f'<progress class="uffd-live-progress" max="100" value="0" aria-label="progress of the run" hidden>'
            f'</progress>'
            f'<div class="uffd-live-result" role="group" aria-label="output" aria-live="polite">'
            f'<pre class="uffd-live-out" tabindex="0" hidden></pre><div class="uffd-live-svg" hidden></div></div>'
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
