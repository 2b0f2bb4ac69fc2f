#!/usr/bin/env bash
# Fetch the browser-side JavaScript the built book needs and lay it out in _vendor/,
# so pages render widgets and maths without any CDN at view time.
#   widgets/  require.js + the ipywidgets HTML manager (embed-amd.js) and its fonts
#   mathjax/  MathJax 3 (tex-mml-chtml) with the CHTML woff-v2 fonts
#   pyodide/  Pyodide (CPython in WebAssembly) for the live cells: loaded only on a reader's first Run
# Sphinx copies _vendor/ into _build/html/_static/ (html_static_path in _config.yml).
# Test-only assets go to _vendor_test/ instead, which the published site does not carry:
#   axe.min.js  axe-core, the accessibility engine scripts/dom_check.py runs in every page
# Only the npm registry is needed (npm pack); nothing is installed globally.
set -euo pipefail

HTML_MANAGER=@jupyter-widgets/html-manager@1.0.15
REQUIREJS=requirejs@2.3.8
MATHJAX=mathjax@3.2.2
PYODIDE_VERSION=314.0.8
PYODIDE=pyodide@$PYODIDE_VERSION
AXE_VERSION=4.14.1
AXE=axe-core@$AXE_VERSION

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/_vendor"
dest_test="$root/_vendor_test"

command -v npm >/dev/null || { echo "vendor_js.sh: npm is needed (apt-get install -y npm)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Download the three tarballs and unpack each into its own folder.
(cd "$work" && npm pack --silent "$HTML_MANAGER" "$REQUIREJS" "$MATHJAX" "$PYODIDE" "$AXE" >/dev/null)
for tarball in "$work"/*.tgz; do
    unpacked="${tarball%.tgz}"
    mkdir -p "$unpacked"
    tar -xzf "$tarball" -C "$unpacked"
done

# Assemble into a staging folder first, then swap it in, so a failed run
# never leaves a half-filled _vendor/ behind.
stage="$work/_vendor"
mkdir -p "$stage/widgets" "$stage/mathjax/output/chtml/fonts" "$stage/pyodide"

manager="$work/jupyter-widgets-html-manager-1.0.15/package/dist"
cp "$manager/embed-amd.js" "$stage/widgets/"
for ext in woff2 woff ttf eot svg; do
    cp "$manager"/*."$ext" "$stage/widgets/"
done
cp "$work/requirejs-2.3.8/package/require.js" "$stage/widgets/"

mathjax="$work/mathjax-3.2.2/package/es5"
cp "$mathjax/tex-mml-chtml.js" "$stage/mathjax/"
cp -r "$mathjax/input" "$mathjax/a11y" "$mathjax/ui" "$stage/mathjax/"
cp -r "$mathjax/output/chtml/fonts/woff-v2" "$stage/mathjax/output/chtml/fonts/"

# Pyodide: the runtime files only (no package wheels ship in the npm package; the live cells
# load uffdsim's and PyYAML's wheels from _static/live/, built by scripts/build_live_wheels.py).
pyodide="$work/pyodide-$PYODIDE_VERSION/package"
for f in pyodide.mjs pyodide.asm.mjs pyodide.asm.wasm python_stdlib.zip pyodide-lock.json; do
    cp "$pyodide/$f" "$stage/pyodide/"
done

stage_test="$work/_vendor_test"
mkdir -p "$stage_test"
cp "$work/axe-core-$AXE_VERSION/package/axe.min.js" "$stage_test/"

touch "$stage/.complete"
rm -rf "$dest" "$dest_test"
mv "$stage_test" "$dest_test"
mv "$stage" "$dest"
echo "vendored browser JS into $dest ($(du -sh "$dest" | cut -f1))"
