"""Shopper preference profiles: events from Oscar's signals, the vector and interest updates, recommendations.

A profile holds the single time-decayed mean vector (the previous release's model, kept for comparison and for
profiles not yet rebuilt) and the multi-interest profile (:mod:`oscar_fashion_ai.ml.interests`) that
recommendations are drawn from."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from oscar.core.loading import get_model

from .. import conf, publishing, runtime, search
from ..ml import cooccurrence
from ..ml import interests as interest_model
from ..ml.preference import fold
from . import cooccurrence as cooccurrence_table

logger = logging.getLogger(__name__)
SESSION_KEY = "fashion_ai_shopper"


@dataclass(frozen=True)
class Owner:
    """Whose profile: a user id, or an anonymous shopper key kept in the session."""

    user_id: int | None = None
    shopper_key: str | None = None

    @property
    def cache_key(self) -> str:
        return f"u{self.user_id}" if self.user_id else f"s{self.shopper_key}"

    def filter(self) -> dict:
        return {"user_id": self.user_id} if self.user_id else {"shopper_key": self.shopper_key, "user__isnull": True}

    def as_task_args(self):
        return [self.user_id, self.shopper_key]


def owner_for_request(request, create: bool = False) -> Owner | None:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return Owner(user_id=user.pk)
    session = getattr(request, "session", None)
    if session is None:
        return None
    key = session.get(SESSION_KEY)
    if key is None and create:
        key = secrets.token_urlsafe(18)
        session[SESSION_KEY] = key
    return Owner(shopper_key=key) if key else None


def _half_life_seconds() -> float:
    return float(conf.get("PREFERENCE_HALF_LIFE_DAYS")) * 86400.0


def record_event(owner: Owner, product_id: int, kind: str, when=None):
    """Store one event and (after commit) queue the vector update. Never raises into the request."""
    from ..models import PreferenceEvent

    weights = conf.get("PREFERENCE_WEIGHTS")
    if kind not in weights:
        raise ValueError(f"unknown event kind {kind!r}")
    PreferenceEvent.objects.create(
        user_id=owner.user_id,
        shopper_key=owner.shopper_key or "",
        product_id=product_id,
        kind=kind,
        weight=float(weights[kind]),
        date_created=when or timezone.now(),
    )
    transaction.on_commit(lambda: publishing.enqueue_preference_update(owner))


def apply_pending(owner: Owner):
    """Fold the owner's unapplied events into their preference vector (idempotent, concurrency-safe)."""
    from ..models import CustomerPreference, PreferenceEvent, ProductEmbedding

    with transaction.atomic():
        lookup = {"user_id": owner.user_id} if owner.user_id else {"shopper_key": owner.shopper_key}
        pref, _ = CustomerPreference.objects.select_for_update().get_or_create(**lookup)
        events = list(
            PreferenceEvent.objects.select_for_update(skip_locked=True)
            .filter(applied=False, **owner.filter())
            .order_by("date_created", "pk")
        )
        if not events:
            return pref
        try:
            version = runtime.model_info().version
        except Exception:  # noqa: BLE001 - no model: events stay pending for later
            logger.warning("Fashion AI: no model; %d preference events left pending", len(events))
            return pref
        if pref.model_version and pref.model_version != version:  # vectors from another model: start over
            PreferenceEvent.objects.filter(**owner.filter()).update(applied=False)
            events = list(PreferenceEvent.objects.filter(**owner.filter()).order_by("date_created", "pk"))
            pref.vector, pref.weight, pref.reference_time, pref.event_count = None, 0.0, None, 0
            pref.interests = {}
        interest_events, base = events, interest_model.Profile.from_json(pref.interests)
        if not pref.interests and pref.event_count:  # a profile from before interests: compute them from all events
            interest_events = list(PreferenceEvent.objects.filter(**owner.filter()).order_by("date_created", "pk"))
            base = None
        vectors = dict(
            ProductEmbedding.objects.filter(
                product_id__in={e.product_id for e in interest_events}, status="indexed", model_version=version
            ).values_list("product_id", "vector")
        )
        usable = [
            (e.date_created.timestamp(), e.weight, vectors[e.product_id]) for e in events if e.product_id in vectors
        ]
        keys = product_keys({e.product_id for e in interest_events if e.product_id in vectors})
        profile = interest_model.fold(
            base,
            [
                (
                    e.date_created.timestamp(),
                    e.weight,
                    vectors[e.product_id],
                    e.product_id,
                    e.kind,
                    keys.get(e.product_id),
                )
                for e in interest_events
                if e.product_id in vectors
            ],
            _half_life_seconds(),
            interest_params(),
        )
        if profile.interests:
            pref.interests = profile.to_json()
        ref = pref.reference_time.timestamp() if pref.reference_time else None
        mean, weight, ref = fold(
            pref.vector if pref.vector is not None else None, pref.weight, ref, usable, _half_life_seconds()
        )
        if mean is not None:
            pref.vector, pref.weight = mean, weight
            pref.reference_time = datetime.fromtimestamp(ref, tz=UTC)
            pref.model_version = version
        pref.event_count += len(events)
        pref.save()
        PreferenceEvent.objects.filter(pk__in=[e.pk for e in events]).update(applied=True)
    return pref


def interest_params() -> interest_model.Params:
    return interest_model.Params(
        similarity=float(conf.get("PREFERENCE_INTEREST_SIMILARITY")),
        max_interests=int(conf.get("PREFERENCE_MAX_INTERESTS")),
        min_share=float(conf.get("RECOMMENDATION_MIN_INTEREST_SHARE")),
        diversity=float(conf.get("RECOMMENDATION_DIVERSITY")),
        depth=int(conf.get("RECOMMENDATION_CANDIDATES_PER_SLOT")),
    )


def product_keys(product_ids) -> dict:
    """The category an interest is keyed by, per product: its lowest category id (a variant: its parent's)."""
    Product = get_model("catalogue", "Product")
    ProductCategory = get_model("catalogue", "ProductCategory")
    owners = dict(Product.objects.filter(pk__in=set(product_ids)).values_list("pk", "parent_id"))
    by_owner = {}
    for product_id, category_id in ProductCategory.objects.filter(
        product_id__in={parent or pk for pk, parent in owners.items()}
    ).values_list("product_id", "category_id"):
        by_owner[product_id] = min(category_id, by_owner.get(product_id, category_id))
    return {pk: by_owner.get(parent or pk) for pk, parent in owners.items()}


def rebuild(owner: Owner):
    """Recompute the owner's vector from all their events."""
    from ..models import CustomerPreference, PreferenceEvent

    lookup = {"user_id": owner.user_id} if owner.user_id else {"shopper_key": owner.shopper_key}
    with transaction.atomic():
        CustomerPreference.objects.filter(**lookup).delete()
        PreferenceEvent.objects.filter(**owner.filter()).update(applied=False)
    return apply_pending(owner)


def merge_into_user(shopper_key: str, user_id: int):
    """After login: the anonymous shopper's events become the user's, and the user's vector is rebuilt."""
    from ..models import CustomerPreference, PreferenceEvent

    with transaction.atomic():
        moved = PreferenceEvent.objects.filter(shopper_key=shopper_key, user__isnull=True).update(
            user_id=user_id, shopper_key=""
        )
        CustomerPreference.objects.filter(shopper_key=shopper_key, user__isnull=True).delete()
    if moved:
        rebuild(Owner(user_id=user_id))
    return moved


def forget(owner: Owner):
    from ..models import CustomerPreference, PreferenceEvent

    lookup = {"user_id": owner.user_id} if owner.user_id else {"shopper_key": owner.shopper_key}
    with transaction.atomic():
        PreferenceEvent.objects.filter(**owner.filter()).delete()
        CustomerPreference.objects.filter(**lookup).delete()


def get_preference(owner: Owner | None):
    from ..models import CustomerPreference

    if owner is None:
        return None
    lookup = {"user_id": owner.user_id} if owner.user_id else {"shopper_key": owner.shopper_key}
    # The interests are only read when recommendations are not cached.
    return CustomerPreference.objects.filter(**lookup).defer("interests", "vector").first()


# --- recommendations ------------------------------------------------------------------------


def _ordered_product_ids(owner: Owner):
    if not owner.user_id:
        return set()
    Line = get_model("order", "Line")
    return set(Line.objects.filter(order__user_id=owner.user_id).values_list("product_id", flat=True))


def _diversify(results, k, per_category):
    if not per_category:
        return results[:k]
    counts, kept = {}, []
    for product, score in results:
        cat = next(iter(c.pk for c in product.categories.all()), None)
        if counts.get(cat, 0) >= per_category:
            continue
        counts[cat] = counts.get(cat, 0) + 1
        kept.append((product, score))
        if len(kept) == k:
            break
    return kept


def fallback_products(k, exclude=()):
    """Bestsellers (by order lines), then the newest public, in-stock products.

    The ranking is shared by every shopper, so it is cached (RECOMMENDATION_CACHE_SECONDS) and each request
    only drops its own excluded products from it."""
    Product = get_model("catalogue", "Product")
    exclude = set(exclude)
    key = f"fashion_ai:fallback:{k + len(exclude)}"
    ids = cache.get(key)
    if ids is None:
        n = k + len(exclude)
        base = Product.objects.browsable().filter(is_public=True, stockrecords__num_in_stock__gt=0).distinct()
        best = list(
            base.annotate(sold=Count("line"))
            .filter(sold__gt=0)
            .order_by("-sold", "-pk")
            .values_list("pk", flat=True)[:n]
        )
        if len(best) < n:
            best += list(
                base.exclude(pk__in=best).order_by("-date_created", "-pk").values_list("pk", flat=True)[: n - len(best)]
            )
        ids = best
        cache.set(key, ids, int(conf.get("RECOMMENDATION_CACHE_SECONDS")))
    ids = [pk for pk in ids if pk not in exclude][:k]
    products = Product.objects.in_bulk(ids)
    return [(products[pk], 0.0) for pk in ids if pk in products]


_VERBS = {"view": "looked at", "basket": "added to your basket", "order": "bought"}


def reason_text(kind: str, title: str) -> str:
    """ "Because you looked at <title>" (the kind of the event the interest's anchor product came from)."""
    verb = _VERBS.get(kind, "looked at")
    if kind == "basket":
        return f"Because you added {title} to your basket"
    return f"Because you {verb} {title}"


def _candidates(queryset, dim):
    """(product ids, cosine similarities, L2-normalised vectors) of ``nearest_queryset`` rows (none: empty arrays)."""
    rows = list(queryset.values_list("product_id", "distance", "vector"))
    vecs = np.asarray([r[2] for r in rows], dtype=np.float64).reshape(len(rows), dim)
    if len(rows):
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    return [r[0] for r in rows], np.asarray([1.0 - float(r[1]) for r in rows]), vecs


def _interest_recommendations(pref, exclude, k):
    """[(product_id, score, reason dict)] drawn from the profile's interests (raises SearchUnavailable)."""
    info = search.ready_model()
    profile = interest_model.Profile.from_json(pref.interests)
    params = interest_params()
    exclude = list(exclude)
    weight = float(conf.get("RECOMMENDATION_COOCCURRENCE_WEIGHT"))
    half_life = _half_life_seconds()
    table = {}
    if weight:
        table = cooccurrence_table.table_for({m[0] for interest in profile.interests for m in interest.members})
    led = {}  # (interest, product) -> the member it co-occurs with, for products the vector search did not reach

    def nearest(interest, n):
        query = interest.unit().astype(np.float32)
        queryset = search.nearest_queryset(query, info.version, exclude)
        ids, sims, vecs = _candidates(queryset[:n], len(query))
        scores = cooccurrence.interest_scores(interest.members, table, profile.ref_time, half_life) if table else {}
        if not scores:
            return ids, sims, vecs
        extra = cooccurrence.top_items(scores, n, skip=set(ids) | set(exclude))
        if extra:  # co-occurring products the vector search did not reach (same availability filters)
            more = _candidates(queryset.filter(product_id__in=extra), len(query))
            j = next(i for i, other in enumerate(profile.interests) if other is interest)
            for pk in more[0]:
                led[j, pk] = cooccurrence.strongest_member(interest.members, table, pk, profile.ref_time, half_life)
            ids, sims, vecs = ids + more[0], np.concatenate([sims, more[1]]), np.concatenate([vecs, more[2]])
        return cooccurrence.blend(ids, sims, vecs, scores, weight, n)

    per_category = conf.get("RECOMMENDATION_MAX_PER_CATEGORY")
    picks = interest_model.recommend(profile, k * 3 if per_category else k, nearest, params)
    if per_category:
        keys, counts, kept = product_keys([p.item for p in picks]), {}, []
        for pick in picks:
            key = keys.get(pick.item)
            if counts.get(key, 0) < per_category:
                counts[key] = counts.get(key, 0) + 1
                kept.append(pick)
        picks = kept[:k]
    anchors = {
        j: profile.interests[j].anchor(profile.ref_time, _half_life_seconds()) for j in {p.interest for p in picks}
    }
    Product = get_model("catalogue", "Product")
    named = {a[0] for a in anchors.values() if a} | {m[0] for m in led.values() if m}
    titles = {p.pk: p.get_title() for p in Product.objects.filter(pk__in=named)}
    out = []
    for pick in picks:
        member = led.get((pick.interest, pick.item))
        anchor = member or anchors.get(pick.interest)
        reason = None
        if anchor and anchor[0] in titles:
            reason = {
                "interest": pick.interest,
                "product_id": anchor[0],
                "kind": anchor[1],
                "source": "cooccurrence" if member else "interest",
                "text": (
                    f"Shoppers who looked at {titles[anchor[0]]} also looked at this"
                    if member
                    else reason_text(anchor[1], titles[anchor[0]])
                ),
            }
        out.append((int(pick.item), float(pick.score), reason))
    return out


def recommend(owner: Owner | None, k: int):
    """Returns (results, source) with source "personal" or "fallback". Each personal result's product carries
    ``fashion_reason`` (a dict with "text", "product_id", "kind", "interest"; None when it has none)."""
    pref = get_preference(owner)
    if pref is None or (not pref.event_count) or pref.reference_time is None:
        return fallback_products(k), "fallback"
    key = f"fashion_ai:rec:{owner.cache_key}:{pref.event_count}:{pref.date_updated.timestamp()}:{k}"
    cached = cache.get(key)
    Product = get_model("catalogue", "Product")
    if cached is not None:
        products = Product.objects.in_bulk([entry[0] for entry in cached])
        return _with_reasons(products, cached), "personal"
    exclude = _ordered_product_ids(owner)
    try:
        if pref.interests:
            entries = _interest_recommendations(pref, exclude, k)
        else:  # a profile from before multi-interest profiles, until its next update or rebuild
            entries = _single_vector_recommendations(pref, exclude, k)
    except search.SearchUnavailable as exc:
        logger.warning("Fashion AI: recommendations fall back: %s", exc)
        return fallback_products(k, exclude), "fallback"
    if not entries:
        return fallback_products(k, exclude), "fallback"
    cache.set(key, entries, int(conf.get("RECOMMENDATION_CACHE_SECONDS")))
    products = Product.objects.in_bulk([entry[0] for entry in entries])
    return _with_reasons(products, entries), "personal"


def _with_reasons(products, entries):
    out = []
    for pk, score, reason in entries:
        if pk in products:
            products[pk].fashion_reason = reason
            out.append((products[pk], score))
    return out


def _single_vector_recommendations(pref, exclude, k):
    if pref.vector is None:
        return []
    per_category = conf.get("RECOMMENDATION_MAX_PER_CATEGORY")
    results = search.nearest(
        np.asarray(pref.vector, dtype=np.float32), k * (3 if per_category else 1), exclude_ids=exclude
    )
    return [(p.pk, float(score), None) for p, score in _diversify(results, k, per_category)]
