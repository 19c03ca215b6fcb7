"""Multi-interest shopper profiles and how recommendations are drawn from them (pure NumPy, no Django).

One mean vector cannot hold several interests: it lands between them and its neighbours come from one side. A
profile here is a few *interests*, each a time-decayed, kind-weighted mean of the product vectors assigned to it:

* **Assignment.** An event whose product has a category (a *key*) joins the interest that already holds that key;
  a product without one joins the interest whose mean is most similar to it (cosine) when that similarity is at
  least ``similarity``. Otherwise the event starts a new interest (the profile *splits*). Categories are used
  because image embeddings trained for retrieval keep neighbourhoods pure but not global distances: on the CC0
  catalog two products of one category have a median cosine of 0.2, and 10 % of cross-category pairs are above it.
* **Merge.** After an update, two interests whose means have become at least ``similarity`` alike are merged
  (weighted); when there are more than ``max_interests``, the two most alike are merged (the *cap*).
* **Decay.** All interests share one reference time T. An event at t >= T first scales every interest's weight by
  ``2 ** (-(t - T) / h)``; an older event is decayed to T instead (as in :mod:`.preference`). An interest's mean is
  unchanged by the decay, its share of the profile is not: old interests fade relative to new ones.

Events are processed in time order (ties keep the caller's order), so folding events one batch at a time equals
folding them all at once (``fashion_rebuild_preferences --all``) as long as they arrive in time order.

Recommendations (:func:`recommend`): each interest gets slots in proportion to its share of the profile's weight,
with at least one for every interest whose share is at least ``min_share``; candidates come from each interest's
nearest products; a product found by several interests is used once; slots are filled interest by interest (the
interest furthest below its quota goes next) with maximal marginal relevance (MMR, Carbonell & Goldstein 1998):
``(1 - diversity) * similarity to the interest - diversity * max similarity to the products already chosen``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import numpy as np

#: How many recent products an interest remembers (for "because you looked at ...").
MEMBERS = 20


@dataclass(frozen=True)
class Params:
    """Settings of the interest model (see conf.py for the shop's defaults and how they were chosen)."""

    similarity: float = 0.5  # cosine threshold to join (or merge) an interest
    max_interests: int = 4
    min_share: float = 0.1  # interests with at least this share of the weight get at least one slot
    diversity: float = 0.0  # MMR trade-off, 0 = plain similarity, 1 = only novelty
    depth: int = 3  # candidates fetched per slot of an interest


@dataclass
class Interest:
    mean: np.ndarray  # float64, the weighted mean of the event vectors (not normalised)
    weight: float  # decayed weight sum at the profile's reference time
    members: list = field(default_factory=list)  # [(product_id, kind, time, weight)], newest first, at most MEMBERS
    keys: set = field(default_factory=set)  # the categories whose events this interest holds

    def unit(self) -> np.ndarray:
        n = float(np.linalg.norm(self.mean))
        return self.mean / n if n > 0 else self.mean

    def anchor(self, ref_time, half_life):
        """The member that contributes most now (kind weight x decay): the product an explanation names."""
        if not self.members:
            return None
        return max(self.members, key=lambda m: (m[3] * _decay(ref_time - m[2], half_life), m[2]))


@dataclass
class Profile:
    interests: list = field(default_factory=list)
    ref_time: float | None = None

    @property
    def total_weight(self) -> float:
        return float(sum(i.weight for i in self.interests))

    def shares(self) -> np.ndarray:
        w = np.array([i.weight for i in self.interests], dtype=np.float64)
        return w / w.sum() if w.sum() > 0 else w

    # --- storage: JSON-safe, vectors as base64 float32 ------------------------------------------
    def to_json(self) -> dict:
        return {
            "ref_time": self.ref_time,
            "interests": [
                {
                    "mean": base64.b64encode(np.asarray(i.mean, dtype="<f4").tobytes()).decode("ascii"),
                    "weight": float(i.weight),
                    "members": [list(m) for m in i.members],
                    "keys": sorted(i.keys, key=str),
                }
                for i in self.interests
            ],
        }

    @classmethod
    def from_json(cls, data) -> Profile:
        if not data:
            return cls()
        interests = [
            Interest(
                mean=np.frombuffer(base64.b64decode(d["mean"]), dtype="<f4").astype(np.float64),
                weight=float(d["weight"]),
                members=[tuple(m) for m in d.get("members", [])],
                keys=set(d.get("keys", [])),
            )
            for d in data.get("interests", [])
        ]
        return cls(interests=interests, ref_time=data.get("ref_time"))


def _decay(seconds, half_life):
    return float(2.0 ** (-max(seconds, 0.0) / half_life))


def _cos(a, b) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def _merge(a: Interest, b: Interest) -> Interest:
    w = a.weight + b.weight
    mean = (a.mean * a.weight + b.mean * b.weight) / w if w > 0 else (a.mean + b.mean) / 2
    members = _keep_members(a.members + b.members)
    return Interest(mean=mean, weight=w, members=members, keys=a.keys | b.keys)


def _keep_members(members):
    newest = {}
    for m in members:  # one entry per product: its latest (heaviest on ties) event
        old = newest.get(m[0])
        if old is None or (m[2], m[3]) > (old[2], old[3]):
            newest[m[0]] = m
    return sorted(newest.values(), key=lambda m: (-m[2], -m[3], m[0]))[:MEMBERS]


def _merge_alike(profile: Profile, params: Params, focus: int | None):
    """Merge interests that became alike (the one just updated first), then enforce the cap."""
    interests = profile.interests
    while focus is not None and len(interests) > 1:
        sims = [(_cos(interests[focus].mean, other.mean), j) for j, other in enumerate(interests) if j != focus]
        best, j = max(sims)
        if best < params.similarity:
            break
        keep, drop = min(focus, j), max(focus, j)
        interests[keep] = _merge(interests[keep], interests[drop])
        del interests[drop]
        focus = keep
    while len(interests) > params.max_interests:
        best, pair = -2.0, (0, 1)
        for a in range(len(interests)):
            for b in range(a + 1, len(interests)):
                s = _cos(interests[a].mean, interests[b].mean)
                if s > best:
                    best, pair = s, (a, b)
        a, b = pair
        interests[a] = _merge(interests[a], interests[b])
        del interests[b]


def fold(profile: Profile | None, events, half_life_seconds: float, params: Params = Params()) -> Profile:
    """Apply ``events`` (iterables of (time_seconds, weight, vector, product_id, kind[, key])) to ``profile`` (not
    modified); returns the new profile. ``key`` is the product's category (any hashable JSON value) or None."""
    profile = (
        Profile(
            interests=[Interest(i.mean.copy(), i.weight, list(i.members), set(i.keys)) for i in profile.interests],
            ref_time=profile.ref_time,
        )
        if profile is not None
        else Profile()
    )
    for event in sorted(events, key=lambda e: e[0]):
        t, w, v, product_id, kind = event[:5]
        key = event[5] if len(event) > 5 else None
        v = np.asarray(v, dtype=np.float64)
        if not np.isfinite(v).all() or not np.linalg.norm(v) > 0 or w <= 0:
            continue
        if profile.ref_time is None:
            profile.ref_time = t
        if t >= profile.ref_time:
            factor = _decay(t - profile.ref_time, half_life_seconds)
            for interest in profile.interests:
                interest.weight *= factor
            profile.ref_time, effective = t, w
        else:  # a late event: decay it to the reference time
            effective = w * _decay(profile.ref_time - t, half_life_seconds)
        member = (int(product_id) if product_id is not None else -1, kind, float(t), float(w))
        keyed = [j for j, i in enumerate(profile.interests) if key is not None and key in i.keys]
        if keyed:
            best, joins = keyed[0], True
        elif key is None and profile.interests:
            sims = [_cos(v, i.mean) for i in profile.interests]
            best = int(np.argmax(sims))
            joins = sims[best] >= params.similarity
        else:
            best, joins = -1, False
        if joins:
            target = profile.interests[best]
            total = target.weight + effective
            target.mean = (target.mean * target.weight + v * effective) / total
            target.weight = total
            target.members = _keep_members(target.members + [member])
            focus = best
        else:
            profile.interests.append(
                Interest(mean=v.copy(), weight=effective, members=[member], keys={key} if key is not None else set())
            )
            focus = len(profile.interests) - 1
        _merge_alike(profile, params, focus)
    return profile


def allocate(shares, k: int, min_share: float) -> list[int]:
    """Slots per interest: proportional to ``shares`` (largest remainder), at least one for every interest whose
    share is >= ``min_share`` (the largest first when there are more such interests than slots)."""
    shares = np.asarray(shares, dtype=np.float64)
    if not len(shares) or k <= 0:
        return [0] * len(shares)
    shares = shares / shares.sum() if shares.sum() > 0 else np.full(len(shares), 1.0 / len(shares))
    order = sorted(range(len(shares)), key=lambda j: (-shares[j], j))
    slots = [0] * len(shares)
    guaranteed = [j for j in order if shares[j] >= min_share][:k]
    for j in guaranteed:
        slots[j] = 1
    remaining = k - len(guaranteed)
    quota = shares * k
    base = [max(int(np.floor(quota[j])) - slots[j], 0) for j in range(len(shares))]
    while sum(base) > remaining:  # the guarantees took slots the floors wanted: trim from the largest
        j = max(range(len(shares)), key=lambda j: (base[j], -j))
        base[j] -= 1
    for j in range(len(shares)):
        slots[j] += base[j]
    while sum(slots) < k:  # largest remainder
        j = max(order, key=lambda j: (quota[j] - slots[j], shares[j]))
        slots[j] += 1
    return slots


@dataclass
class Pick:
    item: object  # the candidate's id (product id in the shop, catalog index in the simulation)
    score: float  # cosine similarity to the interest it came from
    interest: int


def recommend(profile: Profile, k: int, search, params: Params = Params()) -> list[Pick]:
    """Draw ``k`` items from every interest of ``profile``.

    ``search(interest, n)`` returns the ``n`` best candidates for an :class:`Interest` (usually the nearest to
    ``interest.unit()``) as (ids, scores, vectors) (vectors L2-normalised, shape (n, d)), best first; it applies its
    own exclusions. Items are unique in the result."""
    if not profile.interests or k <= 0:
        return []
    shares = profile.shares()
    slots = allocate(shares, k, params.min_share)
    pools = []  # per interest: (ids, similarities, vectors, max similarity to the chosen items), best first
    for j, interest in enumerate(profile.interests):
        n = max(slots[j] * params.depth, slots[j] + 2) if slots[j] else 0
        ids, sims, vecs = search(interest, n) if n else ([], [], None)
        sims = np.asarray(sims, dtype=np.float64)
        vecs = np.asarray(vecs, dtype=np.float64) if len(ids) else np.zeros((0, len(interest.mean)))
        pools.append([list(ids), sims, vecs, np.zeros(len(ids))])
    used = set()
    chosen = []
    filled = [0] * len(pools)
    alive = [np.ones(len(p[0]), dtype=bool) for p in pools]

    def has_left(j):
        return bool(alive[j].any())

    while len(chosen) < k:
        open_ = [j for j in range(len(pools)) if filled[j] < slots[j] and has_left(j)]
        if not open_:  # quotas met or pools dry: any interest's leftovers, by the same rule
            open_ = [j for j in range(len(pools)) if has_left(j)]
            if not open_:
                break
        j = min(open_, key=lambda j: ((filled[j] + 0.5) / max(slots[j], 1e-9), -shares[j], j))
        ids, sims, vecs, novelty = pools[j]
        value = (1 - params.diversity) * sims - params.diversity * novelty
        value = np.where(alive[j], value, -np.inf)
        pos = int(np.argmax(value))
        item = ids[pos]
        used.add(item)
        chosen.append(Pick(item=item, score=float(sims[pos]), interest=j))
        filled[j] += 1
        vec = vecs[pos]
        for q, pool in enumerate(pools):  # the item is taken for every interest; the others must now differ from it
            if not len(pool[0]):
                continue
            if item in pool[0]:
                alive[q][[i for i, other in enumerate(pool[0]) if other == item]] = False
            pool[3] = np.maximum(pool[3], pool[2] @ vec)
    return chosen
