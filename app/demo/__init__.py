"""The demo: the seed's claims and the per-layer study as sweeps (:mod:`app.demo.experiments`), their
findings from the finished runs (:mod:`app.demo.findings`), and the runs page's "Reproduce the paper"
button (:mod:`app.demo.server`)."""
