"""Reproducible benchmarks: ``python -m bench.<name>``, each printing a table of ratios."""
