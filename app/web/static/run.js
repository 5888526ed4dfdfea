// Run page: draws every chart from the page's JSON, then stays live over SSE (epoch + status events).
(function () {
  "use strict";
  const cw = window.cw;
  const data = cw.json("run-data");
  const runId = data.run.id;
  const epochs = new Map(data.epochs.map((r) => [r.epoch, r]));
  let status = data.run.status;
  let histEpoch = null; // null = follow the newest epoch
  const slider = document.getElementById("hist-slider");
  const STATS = ["mean_sv", "sv_lower", "sv_upper", "sv_position", "effective_rank", "dead_dims", "l2_std", "cov_offdiag"];
  const layerNames = (data.layers || []).slice();
  let layer = layerNames.indexOf(data.layer) >= 0 ? data.layer : ""; // "" = the default embedding statistics
  const layerSelect = document.getElementById("layer-select");
  const layerStat = document.getElementById("layer-stat");

  function sorted() { return Array.from(epochs.values()).sort((a, b) => a.epoch - b.epoch); }
  // The rows as the collapse charts see them: the chosen layer's statistics in place of the default ones.
  function view(rows) {
    if (!layer) return rows;
    return rows.map((r) => {
      const st = (r.layers || {})[layer] || {};
      const row = { epoch: r.epoch, metrics: r.metrics, std_hist: st.std_hist || null, singular_values: st.singular_values || null };
      STATS.forEach((k) => { row[k] = st[k] === undefined ? null : st[k]; });
      return row;
    });
  }
  function suffix() { return layer ? " — layer " + cw.esc(layer) : ""; }
  function col(rows, key) { return rows.map((r) => (r[key] === undefined ? null : r[key])); }
  function metric(rows, key) { return rows.map((r) => (r.metrics && r.metrics[key] !== undefined ? r.metrics[key] : null)); }
  function metricKeys(rows, test) {
    const keys = new Set();
    rows.forEach((r) => Object.keys(r.metrics || {}).forEach((k) => { if (test(k)) keys.add(k); }));
    return Array.from(keys).sort();
  }

  function drawSv(rows) {
    const x = rows.map((r) => r.epoch);
    const traces = [
      cw.line("U (upper bound)", x, col(rows, "sv_upper"), "#1f8a4c", { mode: "lines", line: { color: "#1f8a4c", dash: "dash", width: 1 } }),
      cw.line("L (lower bound)", x, col(rows, "sv_lower"), "#c62a2a", { mode: "lines", fill: "tonexty", fillcolor: "rgba(53,89,214,0.07)",
        line: { color: "#c62a2a", dash: "dash", width: 1 } }),
      cw.line("mean singular value s̄", x, col(rows, "mean_sv"), "#3559d6"),
      cw.line("ρ (position in [L, U])", x, col(rows, "sv_position"), "#b86e00", { yaxis: "y2", line: { color: "#b86e00", width: 1.5 } }),
      cw.line("ρ threshold", x, x.map(() => data.rho_threshold), "#b86e00", { yaxis: "y2", mode: "lines", line: { color: "#b86e00", dash: "dot", width: 1 }, hoverinfo: "skip" }),
    ];
    const el = cw.plot("chart-sv", traces, cw.layout("Mean singular value in its [L, U] band, and ρ" + suffix(), {
      yaxis: { title: { text: "s̄", font: { size: 11 } } },
      yaxis2: { title: { text: "ρ", font: { size: 11 } }, overlaying: "y", side: "right", range: [0, 1.05], showgrid: false },
    }));
    const plotted = rows.filter((r) => r.mean_sv !== null && r.mean_sv !== undefined).length;
    document.getElementById("chart-sv").dataset.points = String(plotted);
    return el;
  }

  function drawLines(id, title, rows, keys, getter) {
    const x = rows.map((r) => r.epoch);
    const traces = keys.map((k, i) => cw.line(k, x, getter(rows, k), cw.palette[i % cw.palette.length]))
      .filter((t) => t.y.some((v) => v !== null));
    cw.plot(id, traces, cw.layout(traces.length ? title : title + " (no data yet)"));
  }

  function drawHist(rows) {
    const withHist = rows.filter((r) => r.std_hist && r.std_hist.counts);
    if (!withHist.length) { cw.plot("chart-hist", [], cw.layout("Per-dimension std histogram" + suffix() + " (no data yet)")); return; }
    const edges = withHist[withHist.length - 1].std_hist.edges;
    const bins = cw.histBins(edges);
    const z = bins.index.map((b) => withHist.map((r) => (r.std_hist.counts.length === bins.index.length ? r.std_hist.counts[b] : null)));
    const text = bins.index.map((b) => withHist.map(() => bins.labels[b]));
    const el = cw.plot("chart-hist", [{ type: "heatmap", x: withHist.map((r) => r.epoch), y: bins.index, z: z, text: text, colorscale: "Viridis",
      colorbar: { title: { text: "dims" } }, hovertemplate: "epoch %{x}<br>std in %{text}<br>%{z} dims<extra></extra>" }],
    cw.layout("Per-dimension std histogram (epoch × bin)" + suffix(), { yaxis: Object.assign({ title: { text: "std of dimension" } }, bins.axis),
      hovermode: "closest" }));
    if (el) el.dataset.bins = String(bins.index.length);
    slider.min = String(withHist[0].epoch);
    slider.max = String(withHist[withHist.length - 1].epoch);
    const chosen = histEpoch === null ? withHist[withHist.length - 1]
      : (withHist.find((r) => r.epoch === histEpoch) || withHist[withHist.length - 1]);
    slider.value = String(chosen.epoch);
    document.getElementById("hist-epoch").textContent = String(chosen.epoch);
    if (chosen.std_hist) {
      const one = cw.histBins(chosen.std_hist.edges);
      cw.plot("chart-hist-one", [{ type: "bar", x: one.index, y: chosen.std_hist.counts, text: one.labels, textposition: "none",
        marker: { color: "#3559d6" }, hovertemplate: "std in %{text}<br>%{y} dims<extra></extra>" }],
      cw.layout("Std histogram at epoch " + chosen.epoch + suffix(), { xaxis: Object.assign({ title: { text: "std of dimension" } }, one.axis),
        yaxis: { title: { text: "dimensions" } }, hovermode: "closest" }));
    }
  }

  function drawSpectrum(rows) {
    const withSv = rows.filter((r) => Array.isArray(r.singular_values) && r.singular_values.length);
    if (!withSv.length) { cw.plot("chart-spectrum", [], cw.layout("Singular-value spectrum" + suffix() + " (no data yet)")); return; }
    const k = Math.max.apply(null, withSv.map((r) => r.singular_values.length));
    const idx = Array.from({ length: k }, (_, i) => i + 1);
    const z = idx.map((i) => withSv.map((r) => {
      const v = r.singular_values[i - 1];
      return v === undefined || v === null || v <= 0 ? null : Math.log10(v);
    }));
    const flat = z.flat().filter((v) => v !== null);
    const zmax = Math.max.apply(null, flat);
    const zmin = Math.max(Math.min.apply(null, flat), zmax - 6);
    cw.plot("chart-spectrum", [{ type: "heatmap", x: withSv.map((r) => r.epoch), y: idx, z: z, colorscale: "Magma", zmin: zmin, zmax: zmax,
      colorbar: { title: { text: "log₁₀ s" } }, hovertemplate: "epoch %{x}<br>s_%{y}: 10^%{z:.2f}<extra></extra>" }],
    cw.layout("Singular-value spectrum (log scale)" + suffix(), { yaxis: { title: { text: "index (descending)" }, autorange: "reversed" }, hovermode: "closest" }));
  }

  function drawScalars(scalars) {
    const keys = Object.keys(scalars || {});
    if (!keys.length) return;
    document.getElementById("scalars-card").hidden = false;
    const traces = keys.map((k, i) => cw.line(k, scalars[k].map((p) => p[0]), scalars[k].map((p) => p[1]),
      cw.palette[i % cw.palette.length], { mode: "lines" }));
    cw.plot("chart-scalars", traces, cw.layout("Logged scalars (SDK)", { xaxis: { title: { text: "step" } } }));
  }

  // Heatmap of one statistic over layer (input to output, top to bottom) x epoch.
  function drawLayers(rows) {
    const card = document.getElementById("layers-card");
    const chart = document.getElementById("chart-layers");
    if (!layerNames.length) { card.hidden = true; return; }
    card.hidden = false;
    const stat = layerStat.value;
    const withLayers = rows.filter((r) => r.layers && Object.keys(r.layers).length);
    const z = layerNames.map((name) => withLayers.map((r) => {
      const st = r.layers[name];
      return st && st[stat] !== undefined ? st[stat] : null;
    }));
    const label = layerStat.options[layerStat.selectedIndex].text;
    const step = Math.max(1, Math.ceil(withLayers.length / 12));
    cw.plot("chart-layers", [{ type: "heatmap", x: withLayers.map((r) => r.epoch), y: layerNames.map(cw.esc), z: z,
      colorscale: "Viridis", zmin: stat === "sv_position" ? 0 : undefined, zmax: stat === "sv_position" ? 1 : undefined,
      colorbar: { title: { text: stat === "sv_position" ? "ρ" : stat } },
      hovertemplate: "epoch %{x}<br>%{y}: %{z:.4g}<extra></extra>" }],
    cw.layout(label + " per layer over epochs", { yaxis: { autorange: "reversed", type: "category" }, hovermode: "closest",
      xaxis: { title: { text: "epoch", font: { size: 11 }, standoff: 2 }, tick0: 0, dtick: step },
      margin: { l: 90, r: 18, t: 36, b: 40 } }));
    chart.dataset.layers = String(layerNames.length);
  }

  function addLayers(names) {
    names.forEach((name) => {
      if (layerNames.indexOf(name) >= 0) return;
      layerNames.push(name);
      const option = document.createElement("option");
      option.value = name; option.textContent = name;
      layerSelect.appendChild(option);
    });
  }

  function draw() {
    const rows = sorted();
    const shown = view(rows);
    drawSv(shown);
    drawLines("chart-rank", "Effective rank (RankMe)" + suffix(), shown, ["effective_rank"], col);
    drawLines("chart-dead", "Dead dimensions" + suffix(), shown, ["dead_dims"], col);
    drawLines("chart-loss", "Losses", rows, metricKeys(rows, (k) => k.indexOf("loss") >= 0), metric);
    drawLines("chart-acc", "Accuracy and recall", rows,
      metricKeys(rows, (k) => /(acc|accuracy)$/.test(k) || k.indexOf("recall") === 0), metric);
    drawLines("chart-l2", "l2_std (lightly's monitor) and VICReg covariance" + suffix(), shown, ["l2_std", "cov_offdiag"], col);
    drawHist(shown);
    drawSpectrum(shown);
    drawLayers(rows);
    const last = rows.length ? rows[rows.length - 1].epoch : "—";
    document.getElementById("last-epoch").textContent = String(last);
  }

  let pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(() => { pending = false; draw(); });
  }

  slider.addEventListener("input", () => {
    const rows = sorted();
    const newest = rows.length ? rows[rows.length - 1].epoch : null;
    histEpoch = Number(slider.value) === newest ? null : Number(slider.value);
    drawHist(view(rows));
  });

  layerSelect.addEventListener("change", () => {
    layer = layerSelect.value;
    const url = new URL(window.location.href);
    if (layer) url.searchParams.set("layer", layer); else url.searchParams.delete("layer");
    window.history.replaceState(null, "", url.toString());
    draw();
  });
  layerStat.addEventListener("change", () => drawLayers(sorted()));

  function toRow(d) {
    const st = d.stats || {};
    const row = { epoch: d.epoch, metrics: d.metrics || {}, std_hist: st.std_hist || null, singular_values: st.singular_values || null };
    STATS.forEach((k) => { row[k] = st[k] === undefined ? null : st[k]; });
    row.layers = {};
    Object.keys(d.layers || {}).forEach((name) => {
      const ls = d.layers[name];
      const compact = { std_hist: ls.std_hist || null, singular_values: ls.singular_values || null };
      STATS.forEach((k) => { compact[k] = ls[k] === undefined ? null : ls[k]; });
      row.layers[name] = compact;
    });
    addLayers(Object.keys(row.layers));
    return row;
  }

  function refreshAlerts() {
    fetch("/runs/" + runId + "/alerts?rho=" + encodeURIComponent(data.rho_threshold), { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((alerts) => {
        if (!alerts) return;
        const box = document.getElementById("alerts");
        box.innerHTML = "";
        alerts.forEach((a) => {
          const div = document.createElement("div");
          div.className = "alert";
          div.dataset.kind = a.kind;
          div.dataset.began = String(a.began_epoch);
          div.textContent = "⚠ " + a.message;
          box.appendChild(div);
        });
      }).catch(() => {});
  }
  let alertTimer = null;
  function scheduleAlerts() { clearTimeout(alertTimer); alertTimer = setTimeout(refreshAlerts, 150); }
  let detailsTimer = null;
  function scheduleDetails() { clearTimeout(detailsTimer); detailsTimer = setTimeout(refreshDetails, 1500); }

  function onEpoch(d) {
    if (d.metrics === undefined && d.stats === undefined) {
      fetch("/api/v1/runs/" + runId + "/epochs?since=" + d.epoch, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : [])).then((list) => { list.forEach((e) => epochs.set(e.epoch, toRow(e))); schedule(); });
    } else {
      epochs.set(d.epoch, toRow(d));
      schedule();
    }
    scheduleAlerts();
    scheduleDetails();
  }

  // Summary, worker, attempts and logs come from the server: re-read them when the status changes.
  function refreshDetails() {
    fetch(window.location.pathname + window.location.search, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : null))
      .then((html) => {
        if (!html) return;
        const doc = new DOMParser().parseFromString(html, "text/html");
        const fresh = doc.getElementById("run-data");
        if (fresh) drawScalars(JSON.parse(fresh.textContent).scalars);
        ["details", "logs-card", "epoch-table"].forEach((id) => {
          const fresh = doc.getElementById(id);
          const old = document.getElementById(id);
          if (fresh && old) old.innerHTML = fresh.innerHTML;
        });
      }).catch(() => {});
  }

  function onStatus(d) {
    if (!d.status) return;
    const changed = d.status !== status;
    status = d.status;
    if (changed) refreshDetails();
    const badge = document.querySelector('[data-run-status="' + runId + '"]');
    if (badge) { badge.textContent = status; badge.className = "badge s-" + status; }
    if (data.terminal.indexOf(status) >= 0) {
      const form = document.getElementById("cancel-form");
      if (form) form.remove();
      const note = document.getElementById("cancel-note");
      if (note) note.remove();
    }
    if (d.cancel_requested && data.terminal.indexOf(status) < 0 && !document.getElementById("cancel-note")) {
      const note = document.createElement("span");
      note.id = "cancel-note"; note.className = "muted"; note.textContent = "cancel requested";
      document.getElementById("status").after(note);
    }
  }

  function onLog(d) {
    const pre = document.getElementById("logs");
    if (pre.textContent.indexOf("(no log lines yet)") === 0) pre.textContent = "";
    pre.textContent += "[" + (d.attempt || "") + "] " + (d.line || "") + "\n";
  }

  draw();
  drawScalars(data.scalars);
  if (data.epochs.length) document.getElementById("epoch-table").open = false;  // charts show them
  if (!window.EventSource) return;
  const live = document.getElementById("live");
  const source = new EventSource("/api/v1/runs/" + runId + "/events");
  const parse = (fn) => (ev) => { try { fn(JSON.parse(ev.data)); } catch (e) { console.error("bad event", e); } };
  source.addEventListener("open", () => { live.textContent = "live"; live.classList.add("on"); });
  source.addEventListener("error", () => {
    live.classList.remove("on");
    if (data.terminal.indexOf(status) >= 0) { source.close(); live.textContent = "finished"; return; }
    live.textContent = "reconnecting";
  });
  source.addEventListener("epoch", parse(onEpoch));
  source.addEventListener("status", parse((d) => {
    onStatus(d);
    if (data.terminal.indexOf(d.status) >= 0) {  // the server ends the stream: stop reconnecting
      setTimeout(() => { source.close(); live.textContent = "finished"; live.classList.remove("on"); }, 1500);
    }
  }));
  source.addEventListener("log", parse(onLog));
})();
