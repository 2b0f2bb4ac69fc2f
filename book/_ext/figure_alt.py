"""Figures get their description as alt text, not their file name.

myst-nb renders a notebook's ``image/png`` output as an ``<img>`` whose ``alt`` is the image's
path, which is what a screen reader then reads out.  uffdsim's figures are shown with
:func:`uffdsim.viz.style.to_image`, which puts a description in the output's metadata
(``{"image/png": {"alt": ...}}``, as ``IPython.display.Image(alt=...)`` does); myst-nb ignores
that key.  This extension copies it onto the image node.  myst-nb names an output image after the
SHA-256 of its bytes, so the output that made each image is found exactly: in the notebook the
build executed (written next to the images), else in the source notebook.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from docutils import nodes

IMAGE_NAME = re.compile(r"([0-9a-f]{64})\.png")


def alt_texts(notebook: Path) -> dict[str, str]:
    """SHA-256 of each PNG output's bytes -> the alt text its metadata carries."""
    try:
        data = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found: dict[str, str] = {}
    for cell in data.get("cells", []):
        for out in cell.get("outputs", []) if isinstance(cell, dict) else []:
            png = out.get("data", {}).get("image/png")
            alt = out.get("metadata", {}).get("image/png", {}).get("alt")
            if isinstance(png, str) and isinstance(alt, str) and alt.strip():
                digest = hashlib.sha256(base64.b64decode(png)).hexdigest()
                found[digest] = " ".join(alt.split())
    return found


def _image_file(app: Any, docname: str, uri: str) -> Path | None:
    for base in (Path(app.srcdir) / Path(docname).parent, Path(app.srcdir), Path("/")):
        path = (base / uri).resolve()
        if path.is_file():
            return path
    return None


def set_figure_alt(app: Any, doctree: nodes.document) -> None:
    """On ``doctree-read``: give each notebook output image the alt text its output carries."""
    docname = app.env.docname
    texts: dict[str, str] | None = None
    for node in doctree.findall(nodes.image):
        match = IMAGE_NAME.fullmatch(Path(node.get("uri", "")).name)
        if not match or node.get("alt"):
            continue
        if texts is None:
            texts = {}
            image = _image_file(app, docname, node["uri"])
            if image is not None:
                texts.update(alt_texts(image.parent / f"{docname}.ipynb"))
            texts = {**alt_texts(Path(app.env.doc2path(docname))), **texts}
        alt = texts.get(match.group(1))
        if alt:
            node["alt"] = alt


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-read", set_figure_alt)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
