// Live cells: run uffdsim in the reader's browser with Pyodide (vendored; nothing from another host).
// Pyodide loads on the first Run only; the rest of the page never waits for it.
// Test hook: ?autorun runs every live cell of the page in order and POSTs the outputs to
// /__live_report on the serving host (the book's tests serve the site themselves; on any other
// server the POST just fails). ?autorun=bench runs the first cell twice (cold, then warm).
// &edit=TEXT replaces the first cell's source first (to test how a mistake is reported).
(function () {
  "use strict";
  const script = document.currentScript;
  const STATIC = new URL("..", script ? script.src : document.baseURI);   // .../_static/
  let runtime = null;

  function parts(cell) {
    return {
      src: cell.querySelector(".uffd-live-src"),
      run: cell.querySelector(".uffd-live-run"),
      reset: cell.querySelector(".uffd-live-reset"),
      status: cell.querySelector(".uffd-live-status"),
      progress: cell.querySelector(".uffd-live-progress"),
      out: cell.querySelector(".uffd-live-out"),
      svg: cell.querySelector(".uffd-live-svg"),
    };
  }

  function loadRuntime(report) {
    if (runtime === null) {
      runtime = (async () => {
        if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
          throw new Error("this browser cannot run WebAssembly, so the live cells cannot run here; " +
                          "the outputs printed in the page are the book's own");
        }
        report("loading Python (Pyodide runtime, step 1 of 3)…", 10);
        const mod = await import(new URL("pyodide/pyodide.mjs", STATIC).href);
        const py = await mod.loadPyodide({ indexURL: new URL("pyodide/", STATIC).href,
                                           stdout: () => {}, stderr: () => {} });
        report("loading uffdsim and PyYAML (step 2 of 3)…", 70);
        const manifest = await (await fetch(new URL("live/wheels/manifest.json", STATIC))).json();
        const failures = [];
        await py.loadPackage(manifest.wheels.map((w) => new URL("live/wheels/" + w, STATIC).href),
                             { messageCallback: () => {}, errorCallback: (m) => failures.push(m) });
        report("starting the simulator (step 3 of 3)…", 90);
        try {
          py.runPython("import uffdsim.live");   // loadPackage may fail without throwing: check the import
        } catch (err) {
          throw new Error("uffdsim did not load: " + (failures.join("; ") || String(err).split("\n").pop()));
        }
        return py;
      })();
      runtime.catch(() => { runtime = null; });
    }
    return runtime;
  }

  async function runCell(cell) {
    const p = parts(cell);
    const started = performance.now();
    p.run.disabled = true;
    p.progress.hidden = false;
    const report = (text, pct) => { p.status.textContent = text; p.progress.value = pct; };
    try {
      const py = await loadRuntime(report);
      report("running…", 95);
      py.globals.set("_live_kind", cell.dataset.kind);
      py.globals.set("_live_src", p.src.value);
      const res = JSON.parse(py.runPython(
        "from uffdsim.live import run_cell_json as _live_run\n_live_run(_live_kind, _live_src)"));
      p.out.textContent = res.text;
      p.out.hidden = false;
      p.out.classList.toggle("uffd-live-error", !res.ok);
      p.svg.innerHTML = res.svg || "";
      p.svg.hidden = !res.svg;
      const ms = performance.now() - started;
      report(`done in ${(ms / 1000).toFixed(2)} s` + (res.ok ? "" : " (see the error above)"), 100);
      return Object.assign(res, { ms: ms, id: cell.id });
    } catch (err) {
      const msg = "error: " + String(err && err.message ? err.message : err).split("\n").filter(Boolean).pop();
      p.out.textContent = msg;
      p.out.hidden = false;
      p.out.classList.add("uffd-live-error");
      report("could not run", 0);
      return { ok: false, text: msg, svg: null, svg_sha256: null, ms: performance.now() - started,
               id: cell.id, load_error: true };
    } finally {
      p.run.disabled = false;
      p.progress.hidden = true;
    }
  }

  function setup(cell) {
    const p = parts(cell);
    cell.dataset.orig = p.src.value;
    p.run.addEventListener("click", () => runCell(cell));
    p.reset.addEventListener("click", () => {
      p.src.value = cell.dataset.orig;
      p.out.hidden = true;
      p.svg.hidden = true;
      p.svg.innerHTML = "";
      p.status.textContent = "reset to the book's version";
    });
    p.src.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && ev.shiftKey) { ev.preventDefault(); runCell(cell); }
    });
  }

  async function autorun(mode, edit) {
    const cells = Array.from(document.querySelectorAll(".uffd-live"));
    const doc = { page: location.pathname, mode: mode, cells: [] };
    try {
      if (edit !== null && cells.length) parts(cells[0]).src.value = edit;
      if (mode === "bench" && cells.length) {
        doc.cells.push(await runCell(cells[0]));
        doc.cells.push(await runCell(cells[0]));
        doc.cold_ms = doc.cells[0].ms;
        doc.warm_ms = doc.cells[1].ms;
      } else {
        for (const cell of cells) doc.cells.push(await runCell(cell));
      }
    } catch (err) {
      doc.error = String(err);
    }
    document.body.dataset.liveDone = "1";
    try {
      await fetch("/__live_report", { method: "POST", headers: { "Content-Type": "application/json" },
                                      body: JSON.stringify(doc) });
    } catch (err) { /* not served by the book's test server */ }
  }

  function start() {
    document.querySelectorAll(".uffd-live").forEach(setup);
    const params = new URLSearchParams(location.search);
    if (params.has("autorun")) autorun(params.get("autorun"), params.get("edit"));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
