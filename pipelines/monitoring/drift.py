"""Data drift: the champion's training snapshot against the interactions that arrived since.

Both sides are clean interactions (``user_id, item_id, rating, timestamp``). **New rows** are the
current rows whose (user_id, item_id, timestamp) is not in the snapshot: rows after the
snapshot's last timestamp, late rows with older timestamps, and re-ratings of a pair (cleaning
keeps one row per pair, the latest). Cleaning always sets a timestamp, so the key is complete.

Measures (all vectorised: hashing, ``isin``, ``bincount``; millions of rows take seconds):

- volume: ``new_interactions``, ``new_interactions_ratio`` (over the snapshot's rows) and
  ``volume_ratio`` (new rows over the snapshot's rows in its last period as long as the new rows'
  span, at least a day: the arrival rate then and now);
- ``new_user_share`` / ``new_item_share``: share of new rows by users / on items absent from the
  snapshot, and ``*_distinct`` among the distinct ids of the new rows;
- popularity: ``popularity_js``, the Jensen-Shannon distance (base 2, in [0, 1]) between the item
  popularity of the snapshot and of the new rows over the union of items; ``popularity_js_null``,
  its expected value when both are samples of one distribution (the pooled counts split at random,
  a multivariate hypergeometric draw, averaged over a few draws); ``popularity_js_excess`` = the
  difference, which is what is judged: on a long tail, two samples of one distribution are far
  apart by JS alone, and how far depends on their sizes. ``popularity_psi`` is the population
  stability index over the head items of either side plus one bin for all others;
- ratings: Kolmogorov-Smirnov statistic, PSI (by value when there are few distinct values, else
  by the snapshot's deciles) and Wasserstein distance over the snapshot's standard deviation;
- time: ``hour_of_day_js_excess`` and ``day_of_week_js_excess`` (UTC), the same noise-corrected
  JS distance over when interactions happen. Raw timestamps are not compared: new rows lie after
  the snapshot by construction, so their distribution says only that time passed.

SciPy's statistics do the work (``ks_2samp``, ``wasserstein_distance``, ``jensenshannon``):
Evidently was tried first but does not import under pandas 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.constants import ITEM, RATING, TIMESTAMP, USER

#: Items from the top of each side that get a PSI bin of their own; the rest share one.
HEAD_ITEMS = 20
#: Below this many distinct snapshot ratings, rating PSI bins by value; above, by decile.
MAX_RATING_VALUES = 20
#: Floor of a bin's share in PSI (an empty bin would make it infinite).
PSI_EPSILON = 1e-4
#: Random splits averaged for the JS noise estimate.
NULL_DRAWS = 5
DAY = 86_400


@dataclass
class DriftResult:
    """Measures (name -> float or None) and what the plots need."""

    measures: dict[str, float | None]
    new_mask: np.ndarray  # bool per current row: is it new
    popularity: pd.DataFrame = field(default_factory=pd.DataFrame)  # item_id, snapshot, new (counts)
    ratings: pd.DataFrame = field(default_factory=pd.DataFrame)  # value, snapshot, new (shares)
    hours: np.ndarray = field(default_factory=lambda: np.zeros((2, 24)))  # shares, snapshot row 0, new row 1
    weekdays: np.ndarray = field(default_factory=lambda: np.zeros((2, 7)))


def row_keys(frame: pd.DataFrame) -> pd.Series:
    """A 64-bit hash of each row's (user_id, item_id, timestamp)."""
    keyed = pd.DataFrame({USER: frame[USER].astype(str), ITEM: frame[ITEM].astype(str),
                          TIMESTAMP: frame[TIMESTAMP].astype("int64")})
    return pd.util.hash_pandas_object(keyed, index=False)


def new_rows_mask(snapshot: pd.DataFrame, current: pd.DataFrame) -> np.ndarray:
    """True for each ``current`` row whose (user_id, item_id, timestamp) is not in ``snapshot``."""
    if len(current) == 0:
        return np.zeros(0, dtype=bool)
    if len(snapshot) == 0:
        return np.ones(len(current), dtype=bool)
    return ~row_keys(current).isin(row_keys(snapshot)).to_numpy()


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2: 0 for equal, 1 for disjoint) between two count or share vectors."""
    from scipy.spatial.distance import jensenshannon

    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2))


def js_null(counts_a: np.ndarray, counts_b: np.ndarray, rng: np.random.Generator, draws: int = NULL_DRAWS) -> float:
    """The JS distance expected between samples of these sizes from one distribution.

    The pooled counts are split at random into parts of the two sizes (a multivariate
    hypergeometric draw: a permutation test's null, in O(categories) per draw).
    """
    a, b = np.asarray(counts_a, dtype=np.int64), np.asarray(counts_b, dtype=np.int64)
    if a.sum() <= 0 or b.sum() <= 0:
        return float("nan")
    pooled = a + b
    values = []
    for _ in range(draws):
        part = rng.multivariate_hypergeometric(pooled, int(b.sum()), method="marginals")
        values.append(js_distance(pooled - part, part))
    return float(np.mean(values))


def js_excess(counts_a: np.ndarray, counts_b: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """(distance, noise, max(0, distance - noise)) for two count vectors over the same categories."""
    distance = js_distance(counts_a, counts_b)
    noise = js_null(counts_a, counts_b, rng)
    if np.isnan(distance) or np.isnan(noise):
        return distance, noise, float("nan")
    return distance, noise, max(0.0, distance - noise)


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index: sum (a - e) ln(a / e) over bins of two count or share vectors.

    Shares are floored at ``epsilon`` so an empty bin counts as rare, not infinitely surprising.
    """
    e, a = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if e.sum() <= 0 or a.sum() <= 0:
        return float("nan")
    e, a = np.clip(e / e.sum(), epsilon, None), np.clip(a / a.sum(), epsilon, None)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (largest CDF gap, 0 to 1)."""
    from scipy.stats import ks_2samp

    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    return float(ks_2samp(reference, current).statistic)


def normalised_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein distance over the reference's standard deviation (the raw distance when it is 0)."""
    from scipy.stats import wasserstein_distance

    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    distance = float(wasserstein_distance(reference, current))
    spread = float(np.std(reference))
    return distance / spread if spread > 0 else distance


def value_bins(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin labels, reference counts, current counts): by value when the reference has at most
    :data:`MAX_RATING_VALUES` distinct values (values only the current side has share one extra
    bin), else by the reference's deciles."""
    values, ref_counts = np.unique(reference, return_counts=True)
    if len(values) <= MAX_RATING_VALUES:
        ref_counts = ref_counts.astype(np.float64)
        position = np.searchsorted(values, current)
        inside = (position < len(values)) & (values[np.minimum(position, len(values) - 1)] == current)
        cur_counts = np.bincount(position[inside], minlength=len(values)).astype(np.float64)
        others = float((~inside).sum())
        if others:
            return np.append(values.astype(float), np.nan), np.append(ref_counts, 0.0), np.append(cur_counts, others)
        return values.astype(float), ref_counts, cur_counts
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, 11)))
    inner = edges[1:-1]
    ref_counts = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(inner) + 1)
    cur_counts = np.bincount(np.searchsorted(inner, current, side="right"), minlength=len(inner) + 1)
    return edges[:-1].astype(float), ref_counts.astype(np.float64), cur_counts.astype(np.float64)


def popularity_counts(snapshot_items: pd.Series, new_items: pd.Series) -> pd.DataFrame:
    """item_id, snapshot, new: interaction counts of every item on either side, most popular (snapshot) first."""
    codes, uniques = pd.factorize(pd.concat([snapshot_items.astype(str), new_items.astype(str)], ignore_index=True))
    n = len(snapshot_items)
    frame = pd.DataFrame({
        ITEM: np.asarray(uniques, dtype=object),
        "snapshot": np.bincount(codes[:n], minlength=len(uniques)),
        "new": np.bincount(codes[n:], minlength=len(uniques)),
    })
    return frame.sort_values(["snapshot", "new"], ascending=False, kind="stable").reset_index(drop=True)


def head_psi(popularity: pd.DataFrame, head: int = HEAD_ITEMS) -> float:
    """PSI over the top ``head`` items of each side, each its own bin, plus one bin for the rest."""
    top = set(popularity.nlargest(head, "snapshot").index) | set(popularity.nlargest(head, "new").index)
    inside = popularity.index.isin(list(top))
    ref = np.append(popularity.loc[inside, "snapshot"].to_numpy(), popularity.loc[~inside, "snapshot"].sum())
    new = np.append(popularity.loc[inside, "new"].to_numpy(), popularity.loc[~inside, "new"].sum())
    return psi(ref, new)


def volume_ratio(snapshot_ts: np.ndarray, new_ts: np.ndarray) -> float | None:
    """New rows over the snapshot's rows in its last period as long as the new rows' span (at least
    a day); None when the snapshot has no row in that period or there is no new row."""
    if len(new_ts) == 0 or len(snapshot_ts) == 0:
        return None
    span = max(int(new_ts.max()) - int(new_ts.min()), DAY)
    before = int(np.sum(snapshot_ts > int(snapshot_ts.max()) - span))
    return len(new_ts) / before if before else None


def _calendar_counts(timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    seconds = np.asarray(timestamps, dtype=np.int64)
    hours = np.bincount((seconds // 3600) % 24, minlength=24)
    weekdays = np.bincount((seconds // DAY + 3) % 7, minlength=7)  # 1970-01-01 was a Thursday: Monday = 0
    return hours, weekdays


def _share(part: np.ndarray) -> float | None:
    return float(part.mean()) if len(part) else None


def drift_measures(snapshot: pd.DataFrame, current: pd.DataFrame, seed: int = 0) -> DriftResult:
    """Every drift measure of :mod:`this module <pipelines.monitoring.drift>` for ``current`` against ``snapshot``.

    Both frames have the clean columns (user_id, item_id, rating, timestamp). Measures that need
    new rows are None when there are none. ``seed`` seeds the noise estimates.
    """
    rng = np.random.default_rng(seed)
    new_mask = new_rows_mask(snapshot, current)
    new = current.loc[new_mask]
    n_new, n_snapshot = int(len(new)), int(len(snapshot))
    snapshot_users = pd.Index(snapshot[USER].astype(str).unique())
    snapshot_items = pd.Index(snapshot[ITEM].astype(str).unique())
    new_users, new_items = new[USER].astype(str), new[ITEM].astype(str)
    user_is_new = ~new_users.isin(snapshot_users).to_numpy()
    item_is_new = ~new_items.isin(snapshot_items).to_numpy()
    distinct_users, distinct_items = new_users.unique(), new_items.unique()
    snap_ts, new_ts = snapshot[TIMESTAMP].to_numpy(np.int64), new[TIMESTAMP].to_numpy(np.int64)
    measures: dict[str, float | None] = {
        "snapshot_interactions": float(n_snapshot),
        "current_interactions": float(len(current)),
        "new_interactions": float(n_new),
        "new_interactions_ratio": n_new / n_snapshot if n_snapshot else None,
        "snapshot_rows_missing": float(n_snapshot - (len(current) - n_new)),
        "volume_ratio": volume_ratio(snap_ts, new_ts),
        "days_since_snapshot": ((int(new_ts.max()) - int(snap_ts.max())) / DAY) if n_new and n_snapshot else None,
        "new_user_share": _share(user_is_new),
        "new_item_share": _share(item_is_new),
        "new_user_share_distinct": _share(~pd.Index(distinct_users).isin(snapshot_users)),
        "new_item_share_distinct": _share(~pd.Index(distinct_items).isin(snapshot_items)),
        "new_users": float(len(pd.Index(distinct_users).difference(snapshot_users))),
        "new_items": float(len(pd.Index(distinct_items).difference(snapshot_items))),
    }
    result = DriftResult(measures=measures, new_mask=new_mask)
    keys = ("popularity_js", "popularity_js_null", "popularity_js_excess", "popularity_psi", "rating_ks",
            "rating_psi", "rating_wasserstein", "rating_mean_snapshot", "rating_mean_new",
            "hour_of_day_js", "hour_of_day_js_excess", "day_of_week_js", "day_of_week_js_excess")
    measures.update(dict.fromkeys(keys))
    if n_new == 0 or n_snapshot == 0:
        return result

    popularity = popularity_counts(snapshot[ITEM], new[ITEM])
    js, noise, excess = js_excess(popularity["snapshot"].to_numpy(), popularity["new"].to_numpy(), rng)
    measures.update(popularity_js=js, popularity_js_null=noise, popularity_js_excess=excess,
                    popularity_psi=head_psi(popularity))
    result.popularity = popularity

    snap_r, new_r = snapshot[RATING].to_numpy(np.float64), new[RATING].to_numpy(np.float64)
    labels, ref_counts, cur_counts = value_bins(snap_r, new_r)
    measures.update(rating_ks=ks_statistic(snap_r, new_r), rating_psi=psi(ref_counts, cur_counts),
                    rating_wasserstein=normalised_wasserstein(snap_r, new_r),
                    rating_mean_snapshot=float(snap_r.mean()), rating_mean_new=float(new_r.mean()))
    result.ratings = pd.DataFrame({"value": labels, "snapshot": ref_counts / ref_counts.sum(),
                                   "new": cur_counts / cur_counts.sum()})

    (snap_h, snap_d), (new_h, new_d) = _calendar_counts(snap_ts), _calendar_counts(new_ts)
    hour_js, _, hour_excess = js_excess(snap_h, new_h, rng)
    day_js, _, day_excess = js_excess(snap_d, new_d, rng)
    measures.update(hour_of_day_js=hour_js, hour_of_day_js_excess=hour_excess,
                    day_of_week_js=day_js, day_of_week_js_excess=day_excess)
    result.hours = np.vstack([snap_h / snap_h.sum(), new_h / new_h.sum()])
    result.weekdays = np.vstack([snap_d / snap_d.sum(), new_d / new_d.sum()])
    return result


def clean_measures(measures: dict[str, Any]) -> dict[str, float | None]:
    """NaN and infinities become None (JSON has neither); numbers become floats."""
    out: dict[str, float | None] = {}
    for name, value in measures.items():
        if value is None:
            out[name] = None
            continue
        number = float(value)
        out[name] = number if np.isfinite(number) else None
    return out
