// Accessible names where the theme and the widget library leave them out (axe-core, WCAG 2.1 A/AA,
// is run on every page by scripts/dom_check.py).  Applied on load and to whatever renders later
// (widgets, Font Awesome's icons), by one MutationObserver; each fix is idempotent.
(function () {
  "use strict";
  function visibleText(el) {
    return (el.textContent || "").replace(/\s+/g, " ").trim();
  }
  function fix(root) {
    // The colour-mode button: its icons carry <title>s ("Light", "Dark") that are not part of the
    // button's name ("Color mode").  The icons are decoration: hide them from assistive technology.
    root.querySelectorAll(".theme-switch-button svg, .theme-switch-button i").forEach(function (icon) {
      icon.setAttribute("aria-hidden", "true");
      icon.removeAttribute("role");
      icon.removeAttribute("aria-labelledby");
      icon.querySelectorAll("title").forEach(function (t) { t.remove(); });
    });
    // Folded cells ("Show code cell source"): the summary's generic aria-label hides its visible text.
    root.querySelectorAll("summary[aria-label]").forEach(function (s) {
      if (visibleText(s)) s.removeAttribute("aria-label");
    });
    // ipywidgets' sliders: the draggable handle gets the slider's label as its name.
    root.querySelectorAll(".noUi-handle[role=slider]:not([aria-label])").forEach(function (h) {
      var box = h.closest(".widget-slider, .jupyter-widget-slider, .widget-hslider");
      var label = box && box.querySelector(".widget-label, label");
      h.setAttribute("aria-label", (label && visibleText(label)) || "value");
    });
    // Image widgets: the figure's description travels as the widget's tooltip (the title
    // attribute); give it to assistive technology as the alt text too.
    root.querySelectorAll("img.widget-image[title]:not([alt])").forEach(function (img) {
      img.setAttribute("alt", img.getAttribute("title"));
    });
  }
  function start() {
    fix(document);
    new MutationObserver(function () { fix(document); })
      .observe(document.body, { childList: true, subtree: true, attributes: true,
                                attributeFilter: ["title", "aria-label", "role"] });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
