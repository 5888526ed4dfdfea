// Shared Plotly helpers for the dashboard (plotly.js is served from the installed plotly package).
window.cw = (function () {
  "use strict";
  const palette = ["#3559d6", "#d6453d", "#1f8a4c", "#b86e00", "#7a3fc2", "#0f8c8c", "#c23f8e", "#555f73",
    "#6d9b1d", "#a5512b"];
  function layout(title, extra) {
    return Object.assign({
      title: { text: title, font: { size: 14 }, x: 0.02 },
      margin: { l: 52, r: 18, t: 36, b: 40 },
      legend: { orientation: "h", y: -0.22, yanchor: "top", font: { size: 11 } },
      xaxis: { title: { text: "epoch", font: { size: 11 }, standoff: 2 }, zeroline: false },
      yaxis: { zeroline: false },
      hovermode: "x unified",
      paper_bgcolor: "#fff", plot_bgcolor: "#fff",
    }, extra || {});
  }
  const config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
  // A tick step of 1, 2 or 5 times a power of ten, at least 1, giving about 8 ticks over span.
  function integerStep(span) {
    const raw = Math.max(1, span / 8);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
    return Math.max(1, step);
  }
  // An x axis titled "epoch" counts whole epochs: tick at integers (Plotly would tick at 1.2, 1.4 …).
  function epochTicks(traces, lay) {
    const ax = lay.xaxis || {};
    const title = ax.title && (typeof ax.title === "string" ? ax.title : ax.title.text);
    if (title !== "epoch" || ax.dtick !== undefined || (ax.type && ax.type !== "linear")) return lay;
    let lo = Infinity;
    let hi = -Infinity;
    traces.forEach((t) => (t.x || []).forEach((v) => {
      if (typeof v === "number" && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }));
    const span = isFinite(lo) ? hi - lo : 1;
    const xaxis = Object.assign({}, ax, { tickmode: "linear", tick0: 0, dtick: integerStep(span), tickformat: "d" });
    return Object.assign({}, lay, { xaxis: xaxis });
  }
  function plot(id, traces, lay) {
    const el = document.getElementById(id);
    if (!el || !window.Plotly) return null;
    window.Plotly.react(el, traces, epochTicks(traces, lay), config);
    return el;
  }
  function line(name, x, y, color, extra) {
    return Object.assign({ type: "scatter", mode: "lines+markers", name: name, x: x, y: y,
      line: { color: color, width: 2 }, marker: { size: 4 } }, extra || {});
  }
  // mean +- std band as two traces (upper edge invisible, lower edge filled to it) plus the mean.
  // On a log axis (opts.log) a lower edge at or below zero is drawn at a tenth of the mean.
  function band(name, x, mean, std, color, opts) {
    const log = !!(opts && opts.log);
    const up = mean.map((m, i) => m + std[i]);
    const lo = mean.map((m, i) => (log && m - std[i] <= 0 && m > 0 ? m / 10 : m - std[i]));
    const fill = color + "33";
    return [
      { type: "scatter", mode: "lines", x: x, y: up, line: { width: 0 }, hoverinfo: "skip", showlegend: false, legendgroup: name },
      { type: "scatter", mode: "lines", x: x, y: lo, line: { width: 0 }, fill: "tonexty", fillcolor: fill, hoverinfo: "skip",
        showlegend: false, legendgroup: name },
      line(name, x, mean, color, { legendgroup: name, customdata: std,
        hovertemplate: "%{y:.4g} ± %{customdata:.3g}<extra>" + name + "</extra>" }),
    ];
  }
  // Exponential moving average with TensorBoard's debiasing (the first point is kept as is); weight 0
  // returns the values unchanged, null / non-finite values stay as they are and are skipped.
  function ema(values, weight) {
    if (!(weight > 0)) return values.slice();
    let last = 0;
    let k = 0;
    return values.map((v) => {
      if (v === null || typeof v !== "number" || !isFinite(v)) return v;
      k += 1;
      last = last * weight + (1 - weight) * v;
      return last / (1 - Math.pow(weight, k));
    });
  }
  // Plotly renders a few HTML tags in names and titles: show user-supplied text literally.
  function esc(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function json(id) { const el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; }
  // Std histograms are drawn by bin index, so any declared edges (today's log-spaced ones, or the even
  // [0, 2] bins of older runs) give equal-width bins; ticks sit at round values between them.
  function fmtStd(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    return a < 0.01 || a >= 1000 ? v.toExponential(0).replace("e+", "e") : String(Number(v.toPrecision(3)));
  }
  function histBins(edges) {
    const n = edges.length - 1;
    const index = Array.from({ length: n }, (_, i) => i);
    const labels = index.map((i) => "[" + fmtStd(edges[i]) + ", " + fmtStd(edges[i + 1]) + ")");
    function position(v) { // bin i spans [i - 0.5, i + 0.5]; log interpolation inside a bin that starts above 0
      for (let i = 0; i < n; i++) {
        const a = edges[i], b = edges[i + 1];
        if (v >= a && v <= b) return i - 0.5 + (a > 0 ? Math.log(v / a) / Math.log(b / a) : (v - a) / (b - a));
      }
      return null;
    }
    const positive = edges.filter((e) => e > 0);
    const candidates = [];
    const ticks = [];
    if (edges[0] > 0) candidates.push(edges[0]);
    else if (n > 2 && edges[1] > 2 * (edges[2] - edges[1])) ticks.push({ p: 0, v: 0 }); // a [0, e1) dead bin below log bins
    else ticks.push({ p: -0.5, v: edges[0] });
    if (positive.length) {
      const lo = Math.floor(Math.log10(positive[0])), hi = Math.ceil(Math.log10(edges[n]));
      [1, 5, 2].forEach((m) => { for (let k = lo; k <= hi; k++) candidates.push(Number((m * Math.pow(10, k)).toPrecision(1))); });
    }
    candidates.splice(1, 0, edges[n]);
    candidates.forEach((v) => {
      const p = position(v);
      if (p !== null && ticks.every((t) => Math.abs(t.p - p) >= n / 10)) ticks.push({ p: p, v: v });
    });
    ticks.sort((a, b) => a.p - b.p);
    return { index: index, labels: labels, axis: { tickmode: "array", tickvals: ticks.map((t) => t.p),
      ticktext: ticks.map((t) => fmtStd(t.v)), range: [-0.5, n - 0.5] } };
  }
  return { palette: palette, layout: layout, plot: plot, line: line, band: band, ema: ema, json: json, esc: esc,
    integerStep: integerStep, histBins: histBins };
})();
