"""Indexing: every product image embedded into the pgvector index and kept fresh.

``embedding`` (writing vectors), ``index`` (reindex requests, index health), ``builds`` (a new model's index built
beside the one in use, switched in one transaction), ``hnsw`` (HNSW parameters by catalog size), ``receivers`` (image
saves and deletes mark products pending) and ``tasks`` (the Celery task that embeds a batch). The models themselves
are loaded once per process by ``oscar_fashion_ai.runtime``.
"""
