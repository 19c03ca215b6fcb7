from django.db import connection
from django.http import JsonResponse


def health(request):
    """Liveness probe for load balancers: database reachable, pgvector installed."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    return JsonResponse({"database": "ok", "pgvector": row[0] if row else None}, status=200 if row else 503)
