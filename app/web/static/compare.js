// Compare page and reports: overlaid curves, grouped mean ± std bands, the sweep plot with error bars,
// histograms. The view settings (grouping, x axis, smoothing, log y) come with the data, so a report or
// a share link draws what was saved. On the compare page smoothing and log y redraw at once and are
// written into the URL (address bar, permalink and the "Save as report" form); the other settings
// load new data through the form.
(function () {
  "use strict";
  const cw = window.cw;
  const data = cw.json("compare-data");
  const form = document.getElementById("view-form");
  const view = { smooth: data && data.smooth ? Number(data.smooth) : 0, logy: !!(data && data.logy) };

  // The form as a short URL: empty fields dropped, key lists joined ("-" alone = no keys).
  function formParams() {
    const values = {};
    new FormData(form).forEach((v, k) => {
      const text = String(v).trim();
      if (text) (values[k] = values[k] || []).push(text);
    });
    const params = new URLSearchParams();
    Object.keys(values).forEach((k) => {
      let list = values[k];
      if (k === "group" || k === "line") {
        const keys = list.filter((v) => v !== "-");
        list = keys.length ? keys : ["-"];
      }
      if (k === "smooth" && !(Number(list[list.length - 1]) > 0)) return;
      params.set(k, list.join(","));
    });
    return params;
  }
  function withView(href) {
    const url = new URL(href, window.location.origin);
    if (view.smooth > 0) url.searchParams.set("smooth", String(view.smooth)); else url.searchParams.delete("smooth");
    if (view.logy) url.searchParams.set("logy", "1"); else url.searchParams.delete("logy");
    return url.pathname + url.search;
  }
  function syncUrl() {
    window.history.replaceState(null, "", withView(window.location.href));
    const link = document.getElementById("permalink");
    if (link) link.setAttribute("href", withView(link.getAttribute("href")));
    const saved = document.getElementById("report-query");
    if (saved) saved.value = withView(saved.value);
  }
  if (form) {
    const submit = () => { window.location.href = "/compare?" + formParams().toString(); };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); submit(); });
    const xaxis = document.getElementById("xaxis");
    if (xaxis) xaxis.addEventListener("change", submit);
    const smooth = document.getElementById("smooth");
    const shown = document.getElementById("smooth-value");
    if (smooth) smooth.addEventListener("input", () => {
      view.smooth = Number(smooth.value);
      if (shown) shown.textContent = view.smooth > 0 ? smooth.value : "off";
      redraw();
      syncUrl();
    });
    const logy = document.getElementById("logy");
    if (logy) logy.addEventListener("change", () => { view.logy = logy.checked; redraw(); syncUrl(); });
  }
  function redraw() { if (data) drawCurves(); }
  const onlyDiff = document.getElementById("only-diff");
  if (onlyDiff) onlyDiff.addEventListener("change", () => {
    document.querySelectorAll("#diff-table tr.same").forEach((tr) => { tr.style.display = onlyDiff.checked ? "none" : ""; });
  });
  if (!data) return;
  const color = (i) => cw.palette[i % cw.palette.length];
  const byGroup = data.groups.length > 1;

  // The curves' x axis: epochs, steps, or wall time in s / min / h (stored in seconds).
  const axis = (function () {
    if (data.xaxis === "time") {
      let max = 0;
      Object.keys(data.curves).forEach((id) => data.curves[id].forEach((p) => { max = Math.max(max, p[0]); }));
      const unit = max >= 7200 ? ["h", 3600] : max >= 120 ? ["min", 60] : ["s", 1];
      return { title: "wall time (" + unit[0] + ")", scale: unit[1] };
    }
    return { title: data.xaxis === "step" ? "step" : "epoch", scale: 1 };
  })();
  const scaled = (xs) => xs.map((v) => v / axis.scale);
  function curveLayout(title, extra) {
    return cw.layout(title, Object.assign({
      xaxis: { title: { text: axis.title, font: { size: 11 }, standoff: 2 }, zeroline: false },
      yaxis: { zeroline: false, type: view.logy ? "log" : "linear" },
      hovermode: "closest",
    }, extra || {}));
  }
  // The layer a chart's statistic is of (per-layer collapse, the view's layer=): "sv_position (fc2)".
  const ofLayer = (key, layer) => cw.esc(key) + (layer ? " (" + cw.esc(layer) + ")" : "");
  const statName = ofLayer(data.stat, data.stat_layer);
  const smoothNote = () => (view.smooth > 0 ? " (EMA " + view.smooth + ")" : "");
  // The raw curve, faint, behind its smoothed version.
  function faint(name, x, y, c, legendgroup) {
    return { type: "scatter", mode: "lines", name: name + " (raw)", x: x, y: y, opacity: 0.25,
      line: { color: c, width: 1 }, showlegend: false, legendgroup: legendgroup, hoverinfo: "skip" };
  }

  function drawOverlay() {
    const traces = [];
    const seen = {};
    data.runs.forEach((r, i) => {
      const pts = data.curves[String(r.id)] || [];
      const x = scaled(pts.map((p) => p[0]));
      const y = pts.map((p) => p[1]);
      const c = color(byGroup ? r.group : i);
      const group = "g" + (byGroup ? r.group : "r" + r.id);
      const name = byGroup ? cw.esc(data.groups[r.group].label) : "#" + r.id;
      if (view.smooth > 0) traces.push(faint(name, x, y, c, group));
      traces.push(cw.line(name, x, cw.ema(y, view.smooth), c, {
        mode: "lines", legendgroup: group, showlegend: !seen[group], line: { color: c, width: 1.5 },
        hovertemplate: "%{y:.4g}<extra>#" + r.id + " " + cw.esc(r.name) + "</extra>" }));
      seen[group] = true;
    });
    const legend = byGroup || data.runs.length <= 12;
    cw.plot("chart-overlay", traces, curveLayout(statName + " per run" + (byGroup ? " (colour = group)" : "") +
      smoothNote(), { showlegend: legend }));
  }

  function drawGrouped() {
    let traces = [];
    data.groups.forEach((g, i) => {
      const name = cw.esc(g.label) + " (n=" + g.runs.length + ")";
      const x = scaled(g.x);
      if (view.smooth > 0) traces.push(faint(name, x, g.mean, color(i), name));
      traces = traces.concat(cw.band(name, x, cw.ema(g.mean, view.smooth), cw.ema(g.std, view.smooth), color(i),
        { log: view.logy }));
    });
    const el = cw.plot("chart-grouped", traces, curveLayout(statName + ": mean ± std per group" + smoothNote()));
    if (el) el.dataset.traces = String(traces.length);
  }

  function drawCurves() { drawOverlay(); drawGrouped(); }

  function drawSweep() {
    const el = document.getElementById("chart-sweep");
    if (!data.sweep.length) {
      const why = data.x ? "no run has a final " + ofLayer(data.metric, data.metric_layer) + " yet" : "the runs differ in no config key but seed";
      cw.plot("chart-sweep", [], cw.layout("Sweep plot: " + why, { xaxis: { title: { text: "" } } }));
      if (el) el.dataset.lines = "0";
      return;
    }
    const categorical = data.x_kind === "categorical";
    const colours = {};
    data.groups.forEach((g, i) => { colours[g.label] = color(i); });
    // One line on a categorical axis: a point whose group is "x=value" takes that group's colour.
    const single = categorical && data.sweep.length === 1;
    const pointColours = (s, c) => (single ? s.x.map((v) => colours[data.x + "=" + v] || c) : c);
    const traces = data.sweep.map((s, i) => {
      const c = colours[s.label] || color(i);
      return cw.line(cw.esc(s.label), s.x, s.mean, c, {
        mode: categorical ? "markers" : "lines+markers", marker: { size: categorical ? 9 : 5, color: pointColours(s, c) },
        error_y: { type: "data", array: s.std, visible: true, color: c, thickness: 1.2, width: 4 },
        customdata: s.n, hovertemplate: "%{y:.4g} ± %{error_y.array:.3g} (n=%{customdata})<extra>" + cw.esc(s.label) + "</extra>" });
    });
    if (data.upper_bound.length) {
      traces.push(cw.line("upper bound U", data.upper_bound.map((p) => p[0]), data.upper_bound.map((p) => p[1]), "#1f8a4c",
        { mode: categorical ? "markers" : "lines", marker: { symbol: "line-ew-open", size: 14 }, line: { color: "#1f8a4c", dash: "dash", width: 1.5 } }));
    }
    const xs = data.sweep.flatMap((s) => s.x);
    const positive = !categorical && xs.every((v) => typeof v === "number" && v > 0);
    const spread = positive ? Math.max.apply(null, xs) / Math.min.apply(null, xs) : 1;
    const type = categorical ? "category" : spread >= 8 ? "log" : "linear";
    cw.plot("chart-sweep", traces, cw.layout("Final " + ofLayer(data.metric, data.metric_layer) + " vs " + cw.esc(data.x) + " (error bars: std over seeds)", {
      // side by side only on a category axis: on a numeric one "group" shifts points off their x
      xaxis: { title: { text: cw.esc(data.x) }, type: type }, hovermode: "closest", scattermode: categorical ? "group" : "overlay" }));
    if (el) el.dataset.lines = String(data.sweep.length);
  }

  drawCurves();
  drawSweep();

  const runColour = {};  // the histograms take their run's colour in the overlay
  data.runs.forEach((r, i) => { runColour[String(r.id)] = color(byGroup ? r.group : i); });
  Object.keys(data.hists).forEach((id) => {
    const h = data.hists[id];
    const bins = cw.histBins(h.edges);
    cw.plot("hist-" + id, [{ type: "bar", x: bins.index, y: h.counts, text: bins.labels, textposition: "none",
      marker: { color: runColour[id] || color(0) }, hovertemplate: "std in %{text}: %{y}<extra></extra>" }],
      cw.layout("", { margin: { l: 32, r: 8, t: 8, b: 28 }, xaxis: Object.assign({ title: { text: "" } }, bins.axis), showlegend: false, hovermode: "closest" }));
  });
})();
