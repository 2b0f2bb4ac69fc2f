// The live cells' Python, in a Web Worker (a module worker started by live.js): Pyodide and
// uffdsim load here and every cell runs here, so the page never waits for Python.  The page
// ends a runaway cell by terminating this worker and starting a new one.
//
// Messages in:  {type: "load", base}            base: the site's _static/ URL
//               {type: "run", id, kind, source} run one cell
// Messages out: {type: "progress", text, pct}, {type: "ready"}, {type: "load-error", text},
//               {type: "result", id, json}      json: uffdsim.live.run_cell_json's answer
//               {type: "crash", id, text}       the runtime failed: this worker is not used again
"use strict";

let py = null;

async function load(base) {
  if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
    throw new Error("this browser cannot run WebAssembly, so the live cells cannot run here; " +
                    "the outputs printed in the page are the book's own");
  }
  postMessage({ type: "progress", text: "loading Python (Pyodide runtime, step 1 of 3)…", pct: 10 });
  const mod = await import(new URL("pyodide/pyodide.mjs", base).href);
  const runtime = await mod.loadPyodide({ indexURL: new URL("pyodide/", base).href,
                                          stdout: () => {}, stderr: () => {} });
  postMessage({ type: "progress", text: "loading uffdsim and PyYAML (step 2 of 3)…", pct: 70 });
  const manifest = await (await fetch(new URL("live/wheels/manifest.json", base))).json();
  const failures = [];
  await runtime.loadPackage(manifest.wheels.map((w) => new URL("live/wheels/" + w, base).href),
                            { messageCallback: () => {}, errorCallback: (m) => failures.push(m) });
  postMessage({ type: "progress", text: "starting the simulator (step 3 of 3)…", pct: 90 });
  try {
    runtime.runPython("import uffdsim.live");   // loadPackage may fail without throwing: check the import
  } catch (err) {
    throw new Error("uffdsim did not load: " + (failures.join("; ") || String(err).split("\n").pop()));
  }
  py = runtime;
}

// Each cell runs in a namespace of its own.  Module state needs no reset here: a scenario cell
// runs no code of the reader's, and live.js replaces this worker after every Python cell, so no
// worker runs a reader's Python twice (nothing one cell left in the runtime reaches another).
const RUN = "from uffdsim.live import run_cell_json\nrun_cell_json(_live_kind, _live_src)\n";

function run(msg) {
  const ns = py.globals.get("dict")();
  try {
    ns.set("_live_kind", msg.kind);
    ns.set("_live_src", msg.source);
    return py.runPython(RUN, { globals: ns });
  } finally {
    ns.destroy();
  }
}

self.onmessage = async (ev) => {
  const msg = ev.data || {};
  if (msg.type === "load") {
    try {
      await load(msg.base);
      postMessage({ type: "ready" });
    } catch (err) {
      postMessage({ type: "load-error", text: String(err && err.message ? err.message : err) });
    }
  } else if (msg.type === "run" && py !== null) {
    let json;
    try {
      json = run(msg);
    } catch (err) {   // run_cell_json catches every Python error: this is the runtime itself failing
      const text = String(err && err.message ? err.message : err).split("\n").filter(Boolean).pop();
      postMessage({ type: "crash", id: msg.id, text: text || "unknown error" });
      return;
    }
    postMessage({ type: "result", id: msg.id, json: json });
  }
};
