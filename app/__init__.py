"""collapsewatch server: FastAPI app, storage, pages. Never imports torch."""
