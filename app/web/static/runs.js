// Runs list: bulk selection for compare, live status badges over SSE (GET /api/v1/events).
(function () {
  "use strict";
  const picks = () => Array.from(document.querySelectorAll("input.pick"));
  const count = document.getElementById("selected-count");
  const button = document.getElementById("compare-selected");
  function refresh() {
    const n = picks().filter((p) => p.checked).length;
    count.textContent = n ? n + " selected" : "select runs to compare or change";
    button.disabled = n === 0;
    document.querySelectorAll("#bulk-actions button").forEach((b) => { b.disabled = n === 0; });
  }
  const all = document.getElementById("select-all");
  if (all) all.addEventListener("change", () => { picks().forEach((p) => { p.checked = all.checked; }); refresh(); });
  picks().forEach((p) => p.addEventListener("change", refresh));
  // Submit a compact URL: /compare?runs=1,2,3
  document.getElementById("bulk").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const ids = picks().filter((p) => p.checked).map((p) => p.value);
    if (ids.length) window.location.href = "/compare?runs=" + ids.join(",");
  });
  refresh();
  // Bulk actions: the ticked ids go with the action form (a confirm for the destructive ones).
  const actions = document.getElementById("bulk-actions");
  if (actions) actions.addEventListener("submit", (ev) => {
    const ids = picks().filter((p) => p.checked).map((p) => p.value);
    const question = ev.submitter && ev.submitter.dataset.confirm;
    if (!ids.length || (question && !window.confirm(question))) { ev.preventDefault(); return; }
    actions.querySelectorAll("input.picked").forEach((el) => el.remove());
    const input = document.createElement("input");  // one field: 1,000 ticked runs stay one field
    input.type = "hidden"; input.name = "runs"; input.value = ids.join(","); input.className = "picked";
    actions.appendChild(input);
  });
  // "Show" switches the list at once (active, with archived, archived only, the trash).
  const show = document.getElementById("show-lifecycle");
  if (show) show.addEventListener("change", () => { show.form.submit(); });

  if (!window.EventSource) return;
  const live = document.getElementById("live");
  const fresh = new Set();
  // Summary columns come from the server: re-read the table body (keeping the ticks) after changes.
  let rowsTimer = null;
  function scheduleRows() { clearTimeout(rowsTimer); rowsTimer = setTimeout(refreshRows, 1000); }
  function refreshRows() {
    fetch(window.location.href, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : null))
      .then((html) => {
        if (!html) return;
        const body = new DOMParser().parseFromString(html, "text/html").querySelector("table.runs tbody");
        const mine = document.querySelector("table.runs tbody");
        if (!body || !mine) return;
        const ticked = new Set(picks().filter((p) => p.checked).map((p) => p.value));
        mine.innerHTML = body.innerHTML;
        picks().forEach((p) => { p.checked = ticked.has(p.value); p.addEventListener("change", refresh); });
        refresh();
      }).catch(() => {});
  }
  const source = new EventSource("/api/v1/events");
  source.addEventListener("open", () => { live.textContent = "live"; live.classList.add("on"); });
  source.addEventListener("error", () => { live.textContent = "reconnecting"; live.classList.remove("on"); });
  source.addEventListener("status", (ev) => {
    let data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    const id = data.run_id !== undefined ? data.run_id : data.id;
    const badges = document.querySelectorAll('[data-run-status="' + id + '"]');
    if (!badges.length && data.status === "queued") {
      fresh.add(id);
      const link = document.getElementById("new-runs");
      link.hidden = false;
      link.textContent = fresh.size + " new run" + (fresh.size > 1 ? "s" : "") + " — refresh";
    }
    if (badges.length) scheduleRows();
    badges.forEach((el) => {
      el.textContent = data.status;
      el.className = "badge s-" + data.status;
    });
  });
})();
