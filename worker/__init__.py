"""collapsewatch worker side: regularizers, statistics, training engine, SDK client, Celery tasks.

Never imports sqlalchemy or fastapi.
"""
