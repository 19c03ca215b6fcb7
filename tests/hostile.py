"""Helpers for the reliability/security tests: hostile images and a whole-database row snapshot."""

import io
import struct
import zlib

from django.db import connection
from PIL import Image, ImageDraw


def row_counts() -> dict:
    """Row count of every table in the test database (the plugin's, Oscar's, Django's), in one query."""
    tables = sorted(t for t in connection.introspection.table_names() if not t.startswith("pg_"))
    sql = " UNION ALL ".join(f"SELECT %s, COUNT(*) FROM {connection.ops.quote_name(t)}" for t in tables)
    with connection.cursor() as cursor:
        cursor.execute(sql, tables)
        return dict(cursor.fetchall())


#: sorl-thumbnail's key-value store is a cache of generated thumbnails (rendering a result grid fills it).
CACHE_TABLES = {"thumbnail_kvstore"}


def diff_counts(before: dict, after: dict) -> dict:
    """Tables whose row count changed, except caches."""
    return {
        t: (before.get(t), after.get(t))
        for t in set(before) | set(after)
        if before.get(t) != after.get(t) and t not in CACHE_TABLES
    }


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A syntactically valid PNG whose header claims ``width`` x ``height`` but whose pixel data is tiny."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    if idat is None:
        idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def bomb_png(side: int = 12000) -> bytes:
    """A real decompression bomb: ``side`` x ``side`` of one grey level, a few hundred KB compressed."""
    row = b"\x00" + b"\x00" * side
    raw = zlib.compress(row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", raw) + _chunk(b"IEND", b"")


def strip_png(width: int, height: int) -> bytes:
    """A real, complete greyscale PNG of ``width`` x ``height`` (a thin strip compresses to almost nothing)."""
    raw = zlib.compress((b"\x00" + b"\x80" * width) * height, 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", raw) + _chunk(b"IEND", b"")


def encode(fmt: str, size=(32, 32), mode="RGB", ink=True) -> bytes:
    """A white image with a black cross (a valid, non-blank drawing), in ``mode``, saved as ``fmt``."""
    img = Image.new("RGB", size, (255, 255, 255))
    if ink:
        w, h = size
        draw = ImageDraw.Draw(img)
        draw.line([(0, 0), (w - 1, h - 1)], fill=(0, 0, 0), width=max(1, min(size) // 8))
        draw.line([(w - 1, 0), (0, h - 1)], fill=(0, 0, 0), width=max(1, min(size) // 8))
    if mode in ("I;16", "I", "1"):
        img = img.convert("L").convert(mode)
    elif mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()
