"""The preference-vector update rule (pure NumPy).

A shopper's preference is the time-decayed, kind-weighted mean of the vectors of the products they
interacted with:

    p = sum_i w_i d_i v_i / sum_i w_i d_i,    d_i = 2 ** (-(T - t_i) / h)

with w_i the weight of the event's kind (view, basket, order), h the half-life and T any reference time
(the common factor 2 ** (-T / h) cancels, so the mean only depends on the events). It is kept
incrementally as (mean, decayed weight W, reference time T): a new event at t >= T scales W by
2 ** (-(t - T) / h), adds w, and moves the mean towards v by w / W_new.
"""

from __future__ import annotations

import numpy as np


def decay(seconds: float, half_life_seconds: float) -> float:
    return float(2.0 ** (-seconds / half_life_seconds))


def fold(mean, weight: float, ref_time: float | None, events, half_life_seconds: float):
    """Apply ``events`` (iterable of (time_seconds, weight, vector)) to the state (mean, weight, ref_time).

    Returns the new (mean, weight, ref_time). Events may come in any order.
    """
    total = None if mean is None or weight <= 0 else np.asarray(mean, dtype=np.float64) * weight
    for t, w, v in sorted(events, key=lambda e: e[0]):
        v = np.asarray(v, dtype=np.float64)
        if ref_time is None:
            ref_time = t
        if t >= ref_time:
            factor = decay(t - ref_time, half_life_seconds)
            total = (total * factor if total is not None else 0.0) + w * v
            weight = weight * factor + w
            ref_time = t
        else:  # an older event arriving late: decay it to the reference time instead
            factor = decay(ref_time - t, half_life_seconds)
            total = (total if total is not None else 0.0) + w * factor * v
            weight = weight + w * factor
    if total is None or weight <= 0:
        return None, 0.0, ref_time
    return (total / weight).astype(np.float32), float(weight), ref_time
