// Compare page: overlaid curves, grouped mean ± std bands, sweep plot with error bars, histograms.
(function () {
  "use strict";
  const cw = window.cw;
  const data = cw.json("compare-data");
  const form = document.getElementById("view-form");
  if (form) {
    // Keep bookmarkable URLs short: drop empty parameters.
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const params = new URLSearchParams();
      new FormData(form).forEach((v, k) => { if (String(v).trim()) params.append(k, String(v).trim()); });
      window.location.href = "/compare?" + params.toString();
    });
  }
  const onlyDiff = document.getElementById("only-diff");
  if (onlyDiff) onlyDiff.addEventListener("change", () => {
    document.querySelectorAll("#diff-table tr.same").forEach((tr) => { tr.style.display = onlyDiff.checked ? "none" : ""; });
  });
  if (!data) return;
  const color = (i) => cw.palette[i % cw.palette.length];

  const overlay = data.runs.map((r) => {
    const pts = data.curves[String(r.id)] || [];
    return cw.line("#" + r.id, pts.map((p) => p[0]), pts.map((p) => p[1]), color(r.group),
      { mode: "lines", legendgroup: "g" + r.group, line: { color: color(r.group), width: 1.5 },
        hovertemplate: "%{y:.4g}<extra>#" + r.id + " " + cw.esc(r.name) + "</extra>" });
  });
  cw.plot("chart-overlay", overlay, cw.layout(cw.esc(data.stat) + " per run (colour = group)",
    { hovermode: "closest", showlegend: overlay.length <= 12 }));

  let grouped = [];
  data.groups.forEach((g, i) => {
    grouped = grouped.concat(cw.band(cw.esc(g.label) + " (n=" + g.runs.length + ")", g.x, g.mean, g.std, color(i)));
  });
  const gel = cw.plot("chart-grouped", grouped, cw.layout(cw.esc(data.stat) + ": mean ± std per group", { hovermode: "closest" }));
  if (gel) gel.dataset.traces = String(grouped.length);

  if (data.sweep.length) {
    const traces = data.sweep.map((s, i) => cw.line(cw.esc(s.label), s.x, s.mean, color(i), {
      error_y: { type: "data", array: s.std, visible: true, color: color(i), thickness: 1.2, width: 4 },
      customdata: s.n, hovertemplate: "%{y:.4g} ± %{error_y.array:.3g} (n=%{customdata})<extra>" + cw.esc(s.label) + "</extra>" }));
    if (data.upper_bound.length) {
      traces.push(cw.line("upper bound U", data.upper_bound.map((p) => p[0]), data.upper_bound.map((p) => p[1]), "#1f8a4c",
        { mode: "lines", line: { color: "#1f8a4c", dash: "dash", width: 1.5 } }));
    }
    const numeric = data.sweep.every((s) => s.x.every((v) => typeof v === "number" && v > 0));
    const spread = numeric ? Math.max.apply(null, data.sweep.flatMap((s) => s.x)) / Math.min.apply(null, data.sweep.flatMap((s) => s.x)) : 1;
    cw.plot("chart-sweep", traces, cw.layout("Final " + cw.esc(data.metric) + " vs " + cw.esc(data.x), {
      xaxis: { title: { text: cw.esc(data.x) }, type: spread >= 8 ? "log" : "linear" }, hovermode: "closest" }));
  } else {
    cw.plot("chart-sweep", [], cw.layout("Sweep plot: pick a numeric config key as x"));
  }

  Object.keys(data.hists).forEach((id) => {
    const h = data.hists[id];
    const bins = cw.histBins(h.edges);
    const r = data.runs.find((x) => String(x.id) === id);
    cw.plot("hist-" + id, [{ type: "bar", x: bins.index, y: h.counts, text: bins.labels, textposition: "none",
      marker: { color: color(r ? r.group : 0) }, hovertemplate: "std in %{text}: %{y}<extra></extra>" }],
      cw.layout("", { margin: { l: 32, r: 8, t: 8, b: 28 }, xaxis: Object.assign({ title: { text: "" } }, bins.axis), showlegend: false, hovermode: "closest" }));
  });
})();
