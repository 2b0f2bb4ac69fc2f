// Where the vendored widget manager lives, for require.js: the manager takes its webpack public
// path (the folder its fonts are loaded from) from its AMD module's URL, which would otherwise be
// a folder next to the page that does not exist.  With this, the fonts come from _static/widgets/
// (scripts/vendor_js.sh puts them there), and no CDN is needed.
// Loaded after require.js and before embed-amd.js (see nb_ipywidgets_js in _config.yml).
(function () {
  var widgets = new URL("widgets", document.currentScript.src).href;
  require.config({
    paths: { "@jupyter-widgets": widgets, "@jupyter-widgets/html-manager/dist": widgets },
  });
})();
