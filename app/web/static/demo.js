// Runs page: the "Reproduce the paper" progress cards. Polls GET /demo/<batch>; once every run has
// finished and no report exists yet, posts /demo/<batch>/reports (the server writes them, idempotent).
(function () {
  "use strict";
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.getAttribute("content") : "";

  function show(card, p) {
    card.querySelector("progress").max = p.total;
    card.querySelector("progress").value = p.finished;
    let text = p.finished + "/" + p.total + " runs finished, " + p.running + " running";
    if (p.failed) text += ", " + p.failed + " failed or cancelled";
    card.querySelector(".demo-count").textContent = text;
    card.dataset.done = p.done ? "true" : "false";
    card.dataset.reports = String(p.reports.length);
    const list = card.querySelector(".demo-reports");
    list.innerHTML = "";
    p.reports.forEach((r) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = r.url; a.textContent = r.title;
      li.appendChild(a); list.appendChild(li);
    });
    if (p.reports.length) {
      card.querySelectorAll(".demo-write, .demo-note").forEach((el) => el.remove());
    }
  }

  function writeReports(card) {
    const body = new URLSearchParams({ csrf_token: csrf });
    return fetch("/demo/" + card.dataset.batch + "/reports", {
      method: "POST", credentials: "same-origin", body: body, headers: { Accept: "application/json" },
    }).then((r) => {
      if (r.ok) return r.json();
      card.dataset.writeRefused = String(r.status); // e.g. 403 for a viewer: stop asking
      return null;
    });
  }

  function poll(card) {
    fetch("/demo/" + card.dataset.batch, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((p) => {
        if (!p) return null;
        show(card, p);
        if (p.done && !p.reports.length && !card.dataset.writeRefused) return writeReports(card);
        return p;
      })
      .then((p) => {
        if (p) show(card, p);
        if (card.dataset.writeRefused) return;
        if (!p || !p.done || !p.reports.length) setTimeout(() => poll(card), 3000);
      })
      .catch(() => setTimeout(() => poll(card), 5000));
  }

  document.querySelectorAll(".demo-progress").forEach((card) => {
    if (card.dataset.done !== "true" || card.dataset.reports === "0") poll(card);
  });
})();
