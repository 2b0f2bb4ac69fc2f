// Live cells: run uffdsim in the reader's browser with Pyodide (vendored; nothing from another host).
//
// Python runs in a Web Worker (live/worker.js), loaded on the first Run only, so the page stays
// responsive whatever a cell does.  A cell that runs longer than its time limit (data-time-limit,
// in seconds, stated on the cell), or that the reader stops (Stop, or Escape), ends by terminating
// the worker; so does a runtime that crashed.  The next Run starts a new worker.  After a Python
// cell the worker is replaced too (a new one loads in the background): no worker runs a reader's
// Python twice, so no cell sees what another one left in the runtime (a scenario cell runs no
// code of the reader's and reuses the worker; each cell gets a fresh namespace).
//
// This script reads nothing from the page's address: no code or setting comes from a link.
// Each cell's state is on the element for tests and styles: data-state (idle, loading, running,
// done, stopped), and after a run data-runs (how many ended), data-ok, data-svg-sha256, data-ms
// (the run itself) and data-total-ms (from the click, loading included).
(function () {
  "use strict";
  const script = document.currentScript;
  const STATIC = new URL("..", script ? script.src : document.baseURI);   // .../_static/
  const LOAD_LIMIT_MS = 180000;     // loading Pyodide and the wheels, on a slow connection
  let runtime = null;               // {worker, ready: Promise, pending: Map<id, {resolve, reject}>}
  let nextId = 1;
  let queue = Promise.resolve();    // one cell runs at a time (one worker per page)

  function parts(cell) {
    const q = (c) => cell.querySelector(".uffd-live-" + c);
    return { src: q("src"), run: q("run"), stop: q("stop"), reset: q("reset"), status: q("status"),
             progress: q("progress"), out: q("out"), svg: q("svg") };
  }

  class Stopped extends Error {
    constructor(reason, message) { super(message); this.reason = reason; }
  }

  function discard() {
    if (runtime === null) return;
    const rt = runtime;
    runtime = null;
    rt.worker.terminate();
    for (const p of rt.pending.values()) p.reject(new Stopped("gone", "the Python runtime was stopped"));
    rt.pending.clear();
    if (rt.failLoad) rt.failLoad(new Stopped("gone", "the Python runtime was stopped"));
  }

  function startRuntime() {
    const worker = new Worker(new URL("live/worker.js", STATIC), { type: "module" });
    const rt = { worker: worker, pending: new Map(), progress: null, failLoad: null };
    rt.ready = new Promise((resolve, reject) => {
      rt.failLoad = reject;
      worker.onmessage = (ev) => {
        const m = ev.data || {};
        if (m.type === "progress") { if (rt.progress) rt.progress(m.text, m.pct); }
        else if (m.type === "ready") { rt.failLoad = null; resolve(rt); }
        else if (m.type === "load-error") { reject(new Error(m.text)); }
        else if (m.type === "result" || m.type === "crash") {
          const p = rt.pending.get(m.id);
          rt.pending.delete(m.id);
          if (!p) return;
          if (m.type === "result") p.resolve(JSON.parse(m.json));
          else p.reject(new Stopped("crash", m.text));
        }
      };
      worker.onerror = (ev) => {
        ev.preventDefault();
        const err = new Stopped("crash", ev.message || "the Python worker failed");
        reject(err);
        for (const p of rt.pending.values()) p.reject(err);
        rt.pending.clear();
      };
    });
    rt.ready.catch(() => { if (runtime === rt) discard(); });
    worker.postMessage({ type: "load", base: STATIC.href });
    return rt;
  }

  function getRuntime() {
    if (runtime === null) runtime = startRuntime();
    return runtime;
  }

  function withTimeout(promise, ms, onTimeout) {
    let timer;
    return Promise.race([promise, new Promise((_, reject) => {
      timer = setTimeout(() => reject(onTimeout()), ms);
    })]).finally(() => clearTimeout(timer));
  }

  function setState(cell, state) {
    const p = parts(cell);
    cell.dataset.state = state;
    const busy = state === "loading" || state === "running" || state === "waiting";
    p.run.setAttribute("aria-disabled", String(busy));
    p.stop.setAttribute("aria-disabled", String(!busy));
    p.out.parentElement.setAttribute("aria-busy", String(busy));
    p.progress.hidden = !(state === "loading" || state === "running");
  }

  // The picture is inserted only as the SVG elements uffdsim draws, with no event handler and no
  // link: whatever a cell's Python did, nothing it returns runs as script in the page.
  const SVG_TAGS = new Set(["svg", "defs", "pattern", "marker", "path", "circle", "rect", "line", "text",
                            "tspan", "title", "desc", "g"]);

  function safeSvg(text) {
    if (!text) return null;
    const doc = new DOMParser().parseFromString(text, "image/svg+xml");
    const root = doc.documentElement;
    if (root.namespaceURI !== "http://www.w3.org/2000/svg" || root.localName !== "svg") return null;
    for (const el of [root, ...root.querySelectorAll("*")]) {
      if (el.namespaceURI !== "http://www.w3.org/2000/svg" || !SVG_TAGS.has(el.localName)) return null;
      for (const a of [...el.attributes]) {
        if (/^on/i.test(a.name) || /href$/i.test(a.name) || /^(style|src)$/i.test(a.name)) return null;
      }
    }
    return document.importNode(root, true);
  }

  function show(cell, text, isError, svg) {
    const p = parts(cell);
    p.out.textContent = text;
    p.out.hidden = false;
    p.out.classList.toggle("uffd-live-error", isError);
    const picture = safeSvg(svg);
    p.svg.replaceChildren(...(picture ? [picture] : []));
    p.svg.hidden = !picture;
    // an output that scrolls can be reached with Tab, to scroll it from the keyboard (the theme
    // does the same for every <pre>, but only 300 ms after a change)
    const scrolls = p.out.scrollWidth > p.out.clientWidth || p.out.scrollHeight > p.out.clientHeight;
    p.out.tabIndex = scrolls ? 0 : -1;
  }

  async function runCell(cell) {
    if (["loading", "running", "waiting"].includes(cell.dataset.state)) return;
    const p = parts(cell);
    const limitS = Number(cell.dataset.timeLimit) || 10;
    const report = (text, pct) => { p.status.textContent = text; p.progress.value = pct; };
    let stop = null;
    const stopped = new Promise((_, reject) => {
      stop = (reason) => reject(new Stopped(reason, "stopped"));
    });
    stopped.catch(() => {});
    cell.stopRun = () => stop("user");
    setState(cell, "waiting");
    const waiting = setTimeout(() => report("waiting for the other cell to finish…", 0), 100);
    const turn = queue;
    let release;
    queue = new Promise((r) => { release = r; });
    let started = performance.now();
    let owns = false;                 // this cell's turn came: the worker is its to stop
    let t0 = null;                    // when the worker was given the cell: the time limit counts from here
    try {
      await Promise.race([turn, stopped]);
      owns = true;
      clearTimeout(waiting);
      started = performance.now();
      const rt = getRuntime();
      setState(cell, "loading");
      rt.progress = report;
      report("loading…", 5);
      await withTimeout(Promise.race([rt.ready, stopped]), LOAD_LIMIT_MS,
                        () => new Stopped("load-time", "loading took too long"));
      rt.progress = null;
      setState(cell, "running");
      report(`running… (stops after ${limitS} s; Stop or Escape stops it now)`, 95);
      const id = nextId++;
      const result = new Promise((resolve, reject) => rt.pending.set(id, { resolve, reject }));
      t0 = performance.now();
      rt.worker.postMessage({ type: "run", id: id, kind: cell.dataset.kind, source: p.src.value });
      const res = await withTimeout(Promise.race([result, stopped]), limitS * 1000,
                                    () => new Stopped("time", "time limit"));
      const ms = performance.now() - t0;
      show(cell, res.text, !res.ok, res.svg);
      cell.dataset.ok = String(res.ok);
      cell.dataset.svgSha256 = res.svg_sha256 || "";
      cell.dataset.ms = ms.toFixed(1);
      cell.dataset.totalMs = (performance.now() - started).toFixed(1);
      setState(cell, "done");
      report(`done in ${(ms / 1000).toFixed(2)} s` + (res.ok ? "" : " (see the error below the buttons)"), 100);
      if (cell.dataset.kind === "python") {   // its code may have changed anything in the runtime
        discard();
        getRuntime();                         // the next one loads now, in the background
      }
    } catch (err) {
      const reason = err instanceof Stopped ? err.reason : "load";
      const ms = performance.now() - (t0 === null ? started : t0);
      let text;
      if (reason === "time") {
        text = `error: stopped after ${limitS} s, the time limit of a live cell; the Python runtime was restarted`;
      } else if (reason === "user" && !owns) {
        text = "error: stopped by you before it ran";
      } else if (reason === "user") {
        text = `error: stopped by you after ${(ms / 1000).toFixed(1)} s; the Python runtime was restarted`;
      } else if (reason === "crash" || reason === "gone") {
        text = `error: the Python runtime failed (${err.message}); the next Run starts a new one`;
      } else {
        text = "error: " + String(err && err.message ? err.message : err).split("\n").filter(Boolean).pop();
      }
      clearTimeout(waiting);
      if (owns) discard();            // a runaway, stopped or broken worker goes; the next Run starts anew
      show(cell, text, true, null);
      cell.dataset.ok = "false";
      cell.dataset.svgSha256 = "";
      cell.dataset.ms = ms.toFixed(1);
      cell.dataset.totalMs = (performance.now() - started).toFixed(1);
      setState(cell, reason === "load" || reason === "load-time" ? "done" : "stopped");
      report(reason === "time" || reason === "user" ? "stopped" : "could not run", 0);
    } finally {
      cell.stopRun = null;
      cell.dataset.runs = String(Number(cell.dataset.runs || 0) + 1);
      release();
    }
  }

  function setup(cell) {
    const p = parts(cell);
    cell.dataset.orig = p.src.value;
    setState(cell, "idle");
    const run = () => { if (p.run.getAttribute("aria-disabled") !== "true") runCell(cell); };
    const stop = () => { if (cell.stopRun) cell.stopRun(); };
    p.run.addEventListener("click", run);
    p.stop.addEventListener("click", stop);
    p.reset.addEventListener("click", () => {
      p.src.value = cell.dataset.orig;
      p.out.hidden = true;
      p.out.textContent = "";
      p.svg.hidden = true;
      p.svg.replaceChildren();
      p.status.textContent = "reset to the book's version";
    });
    p.src.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && ev.shiftKey) { ev.preventDefault(); run(); }
    });
    cell.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && cell.stopRun) { ev.preventDefault(); stop(); }
    });
  }

  function start() {
    document.querySelectorAll(".uffd-live").forEach(setup);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
