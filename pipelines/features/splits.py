"""Train/test splits of encoded interactions: pure functions over pandas frames.

The Dask part of the step is reading and encoding; once encoded, a frame is four narrow columns
(``user_idx``/``item_idx`` int32, ``rating`` float32, ``timestamp`` int64: 20 bytes a row, 2 GB
for 100M interactions) and fits in memory, so the splits are vectorised NumPy over pandas.

Every split returns frames that keep the input's row order and index, and guarantees:
no (user, item) pair in both parts (given one row per pair, as the clean contract promises),
every test user has at least one training row, and the same input and seed give the same split.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from pipelines.constants import ITEM_IDX, TIMESTAMP, USER_IDX
from pipelines.errors import ConfigError, DataError
from pipelines.features.config import FeatureConfig, check_range
from pipelines.seeding import rng


class SplitResult(NamedTuple):
    """The parts of one split; ``cold_dropped`` counts test/validation rows dropped as cold."""

    train: pd.DataFrame
    test: pd.DataFrame
    validation: pd.DataFrame | None = None
    cold_dropped: int = 0


def _group_ranks(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For keys sorted ascending: 1-based rank of each row in its group, and the group's size."""
    n = len(sorted_keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, n])
    group = np.repeat(np.arange(len(starts)), sizes)
    return np.arange(n) - starts[group] + 1, sizes[group]


_TICKS = 2**53  # RandomState.rand() returns k / 2**53 for an integer k < 2**53
_GROUPS_PER_KEY = 2**10 - 1  # group offsets that fit above 53 bits of draw in an int64


def _order_by_group_then_draw(groups: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """``np.lexsort((draws, groups))``: rows by group, then by draw, ties in row order.

    When ``groups`` is already non-decreasing (the features step sorts rows by user) and the
    draws are exact multiples of 2**-53 (as ``RandomState.rand`` makes them), each block of up to
    1023 consecutive groups sorts on one int64 key (group offset above the draw's 53 bits),
    nearly sorted already, which the stable sort handles several times faster than lexsort's
    two passes; the result is identical. Otherwise: ``np.lexsort``.
    """
    n = len(groups)
    if n < 2 or (groups[1:] < groups[:-1]).any():
        return np.lexsort((draws, groups))
    ticks = (draws * _TICKS).astype(np.int64)
    if not np.array_equal(ticks / _TICKS, draws):
        return np.lexsort((draws, groups))
    starts_group = np.r_[True, groups[1:] != groups[:-1]]
    group = np.cumsum(starts_group) - 1  # 0, 1, ... per group
    block_starts = np.flatnonzero(starts_group)[::_GROUPS_PER_KEY]
    order = np.empty(n, dtype=np.int64)
    for start, stop in zip(block_starts, np.r_[block_starts[1:], n]):
        key = ((group[start:stop] - group[start]) << 53) | ticks[start:stop]
        order[start:stop] = start + np.argsort(key, kind="stable")
    return order


def _check_fraction(name: str, value: float) -> None:
    try:
        check_range(name, value, 0.0, 1.0, low_open=True, high_open=True)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_columns(df: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"interaction frame has no column(s) {missing} (columns: {list(df.columns)})"
        )


def stratified_split(
    df: pd.DataFrame, test_fraction: float = 0.25, seed: int = 42, col_user: str = USER_IDX
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user random split reproducing Microsoft Recommenders' ``python_stratified_split``.

    Same protocol as ``python_stratified_split(df, ratio=1 - test_fraction, filter_by="user",
    seed=seed)``: one uniform draw per row from ``numpy.random.RandomState(seed).rand(len(df))``
    (the legacy stream that ``np.random.seed`` drives, taken in the frame's row order, but without
    touching the global state), rows sorted by (user, draw), and each user's first
    ``round((1 - test_fraction) * n_user)`` rows (NumPy rounding, half to even) go to train. Given
    the same frame in the same row order, the partition is the one Recommenders returns. One
    deviation: a user whose rounded train count would be 0 (only possible when
    ``(1 - test_fraction) * n_user <= 0.5``) keeps one training row, so every test user has a
    training row. Returns ``(train, test)`` in input row order.
    """
    _check_fraction("test_fraction", test_fraction)
    _check_columns(df, col_user)
    users = df[col_user].to_numpy()
    draws = np.random.RandomState(seed).rand(len(df))
    order = _order_by_group_then_draw(users, draws)
    rank, size = _group_ranks(users[order])
    n_train = np.maximum(1, np.round((1.0 - test_fraction) * size))
    in_train = np.empty(len(df), dtype=bool)
    in_train[order] = rank <= n_train
    return df[in_train], df[~in_train]


def item_stratified_split(
    df: pd.DataFrame, test_fraction: float = 0.25, seed: int = 42, col_item: str = ITEM_IDX
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-item random split: Microsoft Recommenders' ``python_stratified_split(..., filter_by="item")``.

    Their MovieLens benchmark split, transcribed from ``_do_stratification``: one draw per row
    from ``numpy.random.RandomState(seed).rand(len(df))`` in the frame's row order (the stream
    ``np.random.seed(seed)`` drives, without touching the global state), rows sorted by
    (item, draw), and a row goes to train when its 1-based rank within its item divided by the
    item's row count is ``<= 1 - test_fraction`` (float64, as pandas computes it). So an item
    keeps ``floor((1 - test_fraction) * n)`` training rows: an item with one row is test only,
    and its test rows stay relevant in evaluation although no model can rank it (as in their
    benchmark). Users are not protected: :func:`split_interactions` drops the test rows of a
    user left without a training row. Given the same frame in the same row order, the partition
    is the one Recommenders returns. Returns ``(train, test)`` in input row order.
    """
    _check_fraction("test_fraction", test_fraction)
    _check_columns(df, col_item)
    items = df[col_item].to_numpy()
    draws = np.random.RandomState(seed).rand(len(df))
    order = _order_by_group_then_draw(items, draws)
    rank, size = _group_ranks(items[order])
    in_train = np.empty(len(df), dtype=bool)
    in_train[order] = rank.astype(np.float64) / size <= 1.0 - test_fraction
    return df[in_train], df[~in_train]


def random_split(
    df: pd.DataFrame, test_fraction: float = 0.25, seed: int = 42, col_user: str = USER_IDX
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Uniform split: each row goes to test independently with probability ``test_fraction``.

    Per-user test shares vary around ``test_fraction`` (unlike :func:`stratified_split`). A user
    whose rows all landed in test gets back the one with the largest draw, so every test user
    keeps a training row. Draws come from :func:`pipelines.seeding.rng` (``seed``). Returns
    ``(train, test)`` in input row order.
    """
    _check_fraction("test_fraction", test_fraction)
    _check_columns(df, col_user)
    users = df[col_user].to_numpy()
    draws = rng(seed).random(len(df))
    in_test = draws < test_fraction
    order = np.lexsort((draws, users))
    sorted_users = users[order]
    last_of_user = np.r_[sorted_users[1:] != sorted_users[:-1], True][: len(df)]
    train_per_user = pd.Series(~in_test).groupby(users).transform("sum").to_numpy()
    rescue = order[last_of_user]  # each user's largest draw
    rescue = rescue[train_per_user[rescue] == 0]
    in_test[rescue] = False
    return df[~in_test], df[in_test]


def temporal_last_n(
    df: pd.DataFrame, n: int = 1, col_user: str = USER_IDX, col_time: str = TIMESTAMP
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave-last-n-out: each user's ``n`` latest rows (by ``col_time``) go to test.

    Users with ``n`` or fewer rows stay entirely in train. Ties in time are broken by
    ``item_idx`` (when present), then row order, so the split is deterministic without a seed.
    Returns ``(train, test)`` in input row order.
    """
    if n < 1:
        raise ConfigError(f"last_n must be >= 1, got {n}")
    _check_columns(df, col_user, col_time)
    users = df[col_user].to_numpy()
    tie = df[ITEM_IDX].to_numpy() if ITEM_IDX in df.columns else np.zeros(len(df), dtype=np.int64)
    order = np.lexsort((np.arange(len(df)), tie, df[col_time].to_numpy(), users))
    rank, size = _group_ranks(users[order])
    in_test = np.empty(len(df), dtype=bool)
    in_test[order] = (size > n) & (size - rank < n)
    return df[~in_test], df[in_test]


def temporal_cutoff(
    df: pd.DataFrame,
    cutoff: int,
    col_user: str = USER_IDX,
    col_item: str = ITEM_IDX,
    col_time: str = TIMESTAMP,
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Global time split: rows with ``col_time >= cutoff`` (epoch seconds) are test rows.

    Test keeps only users and items that appear in train (a model cannot score the others);
    returns ``(train, test, cold_dropped)`` where ``cold_dropped`` counts the test rows removed.
    """
    _check_columns(df, col_user, col_item, col_time)
    in_test = df[col_time].to_numpy() >= cutoff
    train, test = df[~in_test], df[in_test]
    return (train, *drop_cold(test, train, col_user, col_item))


def drop_cold(
    part: pd.DataFrame,
    train: pd.DataFrame,
    col_user: str = USER_IDX,
    col_item: str | None = ITEM_IDX,
) -> tuple[pd.DataFrame, int]:
    """Rows of ``part`` whose user (and item, unless ``col_item`` is None) appear in ``train``.

    Returns ``(kept, n_dropped)``.
    """
    keep = np.isin(part[col_user].to_numpy(), train[col_user].to_numpy())
    if col_item is not None:
        keep &= np.isin(part[col_item].to_numpy(), train[col_item].to_numpy())
    return part[keep], int((~keep).sum())


def split_interactions(df: pd.DataFrame, config: FeatureConfig) -> SplitResult:
    """Apply the split ``config.split`` asks for, then carve validation from train if asked.

    ``stratified`` is per user, or per item when ``config.stratify_by == "item"``
    (:func:`item_stratified_split`). Validation uses the same method on the training rows:
    ``validation_fraction`` of them for stratified/random (seeded with ``seed + 1`` so its draws differ from the test split's), each
    user's last ``last_n`` training rows for temporal_last_n, and the rows at or after the
    ``1 - validation_fraction`` time quantile of train for temporal_cutoff. Test and validation
    finally keep only users with a training row (and, for temporal_cutoff, items seen in train);
    ``cold_dropped`` counts every row removed that way.
    """
    method = config.split
    with_validation = config.validation_fraction > 0

    def split_once(frame: pd.DataFrame, fraction: float, seed: int, stage: str) -> tuple:
        if method == "stratified" and config.stratify_by == "item":
            return (*item_stratified_split(frame, fraction, seed), 0)
        if method == "stratified":
            return (*stratified_split(frame, fraction, seed), 0)
        if method == "random":
            return (*random_split(frame, fraction, seed), 0)
        if method == "temporal_last_n":
            return (*temporal_last_n(frame, config.last_n), 0)
        if stage == "test":
            return temporal_cutoff(frame, config.cutoff_epoch)
        times = frame[TIMESTAMP].to_numpy()
        if len(times) == 0:
            return frame, frame.iloc[:0], 0
        return temporal_cutoff(frame, int(np.quantile(times, 1.0 - fraction, method="higher")))

    train, test, cold = split_once(df, config.test_fraction, config.seed, "test")
    validation = None
    if with_validation:
        train, validation, cold_v = split_once(
            train, config.validation_fraction, (config.seed + 1) % 2**32, "validation"
        )
        cold += cold_v
    # Carving validation can leave a temporal test user (or item) with no training row.
    item_col = ITEM_IDX if method == "temporal_cutoff" else None
    test, cold_t = drop_cold(test, train, USER_IDX, item_col)
    cold += cold_t
    if validation is not None:
        validation, cold_v = drop_cold(validation, train, USER_IDX, item_col)
        cold += cold_v
    return SplitResult(train, test, validation, cold)
