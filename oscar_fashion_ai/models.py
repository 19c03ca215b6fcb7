"""Database models of oscar-fashion-ai.

Oscar models are referenced by string so that a shop's forked catalogue keeps working.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _
from pgvector.django import HnswIndex, VectorField

#: Dimension of the vector column as created by the first migration. A model with another
#: dimension is detected by ``oscar_fashion_ai.index.check_index`` and ``fashion_reindex --all``
#: resizes the column (see ``oscar_fashion_ai.index.ensure_dimensions``).
EMBEDDING_DIMENSIONS = 256


class ProductEmbedding(models.Model):
    """The Image2Vec vector of one product's primary image."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        INDEXED = "indexed", _("Indexed")
        FAILED = "failed", _("Failed")

    product = models.OneToOneField(
        "catalogue.Product", on_delete=models.CASCADE, related_name="fashion_embedding", verbose_name=_("product")
    )
    image = models.ForeignKey(
        "catalogue.ProductImage",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("source image"),
    )
    vector = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, blank=True)
    model_version = models.CharField(_("model version"), max_length=128, blank=True, db_index=True)
    image_checksum = models.CharField(_("image checksum (sha1)"), max_length=40, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(_("last error"), blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    date_created = models.DateTimeField(_("created"), auto_now_add=True)
    date_updated = models.DateTimeField(_("updated"), auto_now=True)
    date_indexed = models.DateTimeField(_("indexed"), null=True, blank=True)

    class Meta:
        verbose_name = _("product embedding")
        verbose_name_plural = _("product embeddings")
        indexes = [
            HnswIndex(
                name="fashion_ai_embedding_hnsw",
                fields=["vector"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            )
        ]

    def __str__(self):
        return f"{self.product_id}: {self.status} ({self.model_version or 'no model'})"


class IndexRun(models.Model):
    """One reindex request (dashboard button, admin action, command), for the dashboard's "last run"."""

    requested_by = models.CharField(_("requested by"), max_length=150, blank=True)
    scope = models.CharField(_("scope"), max_length=64)
    products = models.PositiveIntegerField(_("products"), default=0)
    date_created = models.DateTimeField(_("requested"), auto_now_add=True)

    class Meta:
        ordering = ["-date_created"]
        get_latest_by = "date_created"

    def __str__(self):
        return f"{self.scope} ({self.products}) at {self.date_created:%Y-%m-%d %H:%M}"
