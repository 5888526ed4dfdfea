"""Integrations with training frameworks: :mod:`collapsewatch.integrations.lightning` (PyTorch
Lightning, ``pip install 'collapsewatch[lightning]'``)."""
