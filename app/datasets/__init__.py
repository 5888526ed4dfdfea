"""Datasets: project resources that jobs name by id instead of a path (DESIGN.md §5, §6).

An **upload** is an ``.npz`` sent through the browser or the API, checked before it is accepted
(``validate``), stored in the artifact store under a generated name (``files``) with its sha256.
A **reference** names a file under a data root that worker hosts configure
(``COLLAPSEWATCH_DATA_ROOTS``), as ``root-name/relative/path.npz`` with the sha256 the registrant
computed; the server never reads it, the worker resolves it under its own root. ``store`` holds the
database functions (listing, registering, the submit-time check, the worker's claimed-run check).
"""
