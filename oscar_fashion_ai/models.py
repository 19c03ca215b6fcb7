"""Database models of oscar-fashion-ai.

Oscar models are referenced by string so that a shop's forked catalogue keeps working.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from pgvector.django import HnswIndex, VectorField

#: Dimension of the vector column as created by the first migration. A model with another
#: dimension is detected by ``oscar_fashion_ai.indexing.index.check_index`` and ``fashion_reindex --all``
#: resizes the column (see ``oscar_fashion_ai.indexing.index.ensure_dimensions``).
EMBEDDING_DIMENSIONS = 256


class EmbeddingRow(models.Model):
    """The columns of one product's vector row, shared by the index that search reads (:class:`ProductEmbedding`)
    and the one a new model's vectors are written into meanwhile (:class:`ProductEmbeddingNext`).

    The two tables must stay alike column for column: the switch to a new model renames one into the other
    (``oscar_fashion_ai.indexing.builds.activate``). Add or change columns here, never on one of the two classes."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        INDEXED = "indexed", _("Indexed")
        FAILED = "failed", _("Failed")

    vector = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, blank=True)
    # No B-tree indexes on model_version/status: they would tempt the planner away from the HNSW index
    # (filters are applied while walking it; see search.nearest_queryset).
    model_version = models.CharField(_("model version"), max_length=128, blank=True)
    image_checksum = models.CharField(_("image checksum (sha1)"), max_length=40, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(_("last error"), blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    date_created = models.DateTimeField(_("created"), auto_now_add=True)
    date_updated = models.DateTimeField(_("updated"), auto_now=True)
    date_indexed = models.DateTimeField(_("indexed"), null=True, blank=True)

    class Meta:
        abstract = True

    def __str__(self):
        return f"{self.product_id}: {self.status} ({self.model_version or 'no model'})"


class ProductEmbedding(EmbeddingRow):
    """The Image2Vec vector of one product's primary image: the index that search reads."""

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


class ProductEmbeddingNext(EmbeddingRow):
    """Vectors of the model being indexed (an :class:`IndexBuild` in state ``building``), written while search
    keeps reading :class:`ProductEmbedding`; empty otherwise. When every product has its row, the two tables swap
    names in one transaction (``oscar_fashion_ai.indexing.builds``). Its vector column takes the new model's
    dimension and its HNSW index the served index's parameters when a build starts."""

    product = models.OneToOneField(
        "catalogue.Product", on_delete=models.CASCADE, related_name="+", verbose_name=_("product")
    )
    image = models.ForeignKey(
        "catalogue.ProductImage",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("source image"),
    )

    class Meta:
        verbose_name = _("product embedding (next model)")
        verbose_name_plural = _("product embeddings (next model)")
        indexes = [
            HnswIndex(
                name="fashion_ai_embedding_next_hnsw",
                fields=["vector"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            )
        ]


class IndexBuild(models.Model):
    """One model's vector index: the one search uses (``active``, at most one), one being written (``building``,
    at most one), or an earlier one. ``weights`` is where that model's weights file is, so that search can keep
    embedding queries with the model in use while another model's vectors are written."""

    class State(models.TextChoices):
        BUILDING = "building", _("Building")
        ACTIVE = "active", _("In use")
        RETIRED = "retired", _("Replaced")
        ABANDONED = "abandoned", _("Abandoned")

    version = models.CharField(_("model version"), max_length=128)
    weights = models.CharField(_("weights file"), max_length=1000)
    weights_sha256 = models.CharField(_("weights sha256"), max_length=64)
    dim = models.PositiveIntegerField(_("dimensions"))
    state = models.CharField(_("state"), max_length=16, choices=State.choices)
    requested_by = models.CharField(_("requested by"), max_length=150, blank=True)
    products = models.PositiveIntegerField(_("products at start"), default=0)
    message = models.TextField(_("message"), blank=True)
    date_created = models.DateTimeField(_("started"), auto_now_add=True)
    date_activated = models.DateTimeField(_("switched to"), null=True, blank=True)
    date_finished = models.DateTimeField(_("ended"), null=True, blank=True)

    class Meta:
        ordering = ["-date_created", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["state"], condition=models.Q(state="active"), name="fashion_one_active_index"
            ),
            models.UniqueConstraint(
                fields=["state"], condition=models.Q(state="building"), name="fashion_one_index_build"
            ),
        ]

    def __str__(self):
        return f"{self.version} ({self.state})"


class AdaptationRun(models.Model):
    """One ``fashion_adapt`` run (dashboard button or command): its progress and outcome for the dashboard."""

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        INSTALLED = "installed", _("Installed")
        KEPT = "kept", _("Kept the model in use")
        FAILED = "failed", _("Failed")

    requested_by = models.CharField(_("requested by"), max_length=150, blank=True)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.QUEUED)
    stage = models.CharField(_("stage"), max_length=200, blank=True)
    progress = models.FloatField(_("progress (0-1)"), default=0.0)
    message = models.TextField(_("outcome"), blank=True)
    result = models.JSONField(_("measurements"), default=dict, blank=True)
    installed_version = models.CharField(_("installed version"), max_length=128, blank=True)
    task_id = models.CharField(_("task id"), max_length=64, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    date_created = models.DateTimeField(_("requested"), auto_now_add=True)
    date_started = models.DateTimeField(_("started"), null=True, blank=True)
    date_updated = models.DateTimeField(_("last progress"), auto_now=True)
    date_finished = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        ordering = ["-date_created", "-pk"]
        get_latest_by = "date_created"

    @property
    def done(self) -> bool:
        return self.state in {self.State.INSTALLED, self.State.KEPT, self.State.FAILED}

    def __str__(self):
        return f"adaptation {self.pk}: {self.state}"


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


class PreferenceEvent(models.Model):
    """One shopper interaction (view, basket addition, order line) with a product."""

    class Kind(models.TextChoices):
        VIEW = "view", _("Viewed")
        BASKET = "basket", _("Added to basket")
        ORDER = "order", _("Ordered")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="fashion_events"
    )
    shopper_key = models.CharField(_("anonymous shopper key"), max_length=64, blank=True, db_index=True)
    product = models.ForeignKey("catalogue.Product", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    weight = models.FloatField(_("weight"))
    applied = models.BooleanField(_("applied to the preference vector"), default=False, db_index=True)
    date_created = models.DateTimeField(_("time"), db_index=True)

    class Meta:
        ordering = ["date_created", "pk"]
        indexes = [models.Index(fields=["user", "applied"]), models.Index(fields=["shopper_key", "applied"])]

    def __str__(self):
        return f"{self.kind} {self.product_id} by {self.user_id or self.shopper_key}"


class CustomerPreference(models.Model):
    """A shopper's style: the time-decayed, kind-weighted mean of the vectors of products they interacted with.

    ``vector`` is the mean S/W where S = sum_i w_i * 2^(-(t_ref - t_i)/h) * v_i and
    W = sum_i w_i * 2^(-(t_ref - t_i)/h), both decayed to ``reference_time`` (docs/RECOMMENDATIONS.md).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="fashion_preference"
    )
    shopper_key = models.CharField(_("anonymous shopper key"), max_length=64, null=True, blank=True, unique=True)
    vector = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, blank=True)
    weight = models.FloatField(_("decayed weight sum"), default=0.0)
    reference_time = models.DateTimeField(_("decay reference time"), null=True, blank=True)
    model_version = models.CharField(_("model version"), max_length=128, blank=True)
    event_count = models.PositiveIntegerField(_("events"), default=0)
    #: The multi-interest profile (``oscar_fashion_ai.ml.interests.Profile.to_json``): a few decayed interest
    #: vectors, each with the categories and recent products it came from. Empty until the next update or rebuild.
    interests = models.JSONField(_("interests"), default=dict, blank=True, null=True)
    date_updated = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False) | models.Q(shopper_key__isnull=False),
                name="fashion_pref_has_owner",
            ),
        ]

    def __str__(self):
        return f"preference of {self.user_id or self.shopper_key} ({self.event_count} events)"


class ProductNeighbour(models.Model):
    """Item-to-item co-occurrence learnt from the shoppers' events (``fashion_refresh_cooccurrence``): ``neighbour``
    is one of the ``COOCCURRENCE_NEIGHBOURS`` products most often engaged with by the same shoppers as ``product``
    (``score``: cosine similarity of the two products' shopper sets). Aggregate data, no shopper in it; the whole
    table is replaced at every refresh."""

    product = models.ForeignKey("catalogue.Product", on_delete=models.CASCADE, related_name="+")
    neighbour = models.ForeignKey("catalogue.Product", on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(_("co-occurrence (cosine)"))
    date_refreshed = models.DateTimeField(_("refreshed"), default=timezone.now)

    class Meta:
        verbose_name = _("co-occurring product")
        constraints = [models.UniqueConstraint(fields=["product", "neighbour"], name="fashion_neighbour_unique")]

    def __str__(self):
        return f"{self.product_id} ~ {self.neighbour_id} ({self.score:.3f})"
