"""Plain domain functions: each takes a ``session`` keyword-only and never commits."""
