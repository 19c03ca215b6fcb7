"""Indexing: every product image embedded into the pgvector index and kept fresh.

``embedding`` (the models loaded lazily per process, and writing vectors), ``index`` (reindex requests, index
health), ``builds`` (a new model's index built beside the one in use, switched in one transaction), ``hnsw`` (HNSW
parameters by catalog size), ``receivers`` (image saves and deletes mark products pending) and ``tasks`` (the
Celery task that embeds a batch).
"""
