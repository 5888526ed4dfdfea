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
  function plot(id, traces, lay) {
    const el = document.getElementById(id);
    if (!el || !window.Plotly) return null;
    window.Plotly.react(el, traces, lay, config);
    return el;
  }
  function line(name, x, y, color, extra) {
    return Object.assign({ type: "scatter", mode: "lines+markers", name: name, x: x, y: y,
      line: { color: color, width: 2 }, marker: { size: 4 } }, extra || {});
  }
  // mean +- std band as two traces (upper edge invisible, lower edge filled to it) plus the mean.
  function band(name, x, mean, std, color) {
    const up = mean.map((m, i) => m + std[i]);
    const lo = mean.map((m, i) => m - std[i]);
    const fill = color + "33";
    return [
      { type: "scatter", mode: "lines", x: x, y: up, line: { width: 0 }, hoverinfo: "skip", showlegend: false, legendgroup: name },
      { type: "scatter", mode: "lines", x: x, y: lo, line: { width: 0 }, fill: "tonexty", fillcolor: fill, hoverinfo: "skip",
        showlegend: false, legendgroup: name },
      line(name, x, mean, color, { legendgroup: name, customdata: std,
        hovertemplate: "%{y:.4g} ± %{customdata:.3g}<extra>" + name + "</extra>" }),
    ];
  }
  // Plotly renders a few HTML tags in names and titles: show user-supplied text literally.
  function esc(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function json(id) { const el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; }
  return { palette: palette, layout: layout, plot: plot, line: line, band: band, json: json, esc: esc };
})();
