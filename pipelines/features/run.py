"""The features step: clean interactions -> encodings, splits, matrices, content features.

``run_features`` is what the ``build_features`` task and the CLI call. It owns
``features/<key>/`` under the lake root, written through :func:`pipelines.storage.write_partition`
(a temporary folder renamed into place, manifest last), so a re-run gives the same files and a
crash never leaves a half-written partition under the real name. It reads only clean partitions
that have their manifest.

Held-out rows whose user (or item) has no training row are dropped as cold and counted; above
``warn_cold_fraction`` of the held-out rows the step warns, above ``max_cold_fraction`` it fails.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.constants import ITEM, ITEM_IDX, RATING, TIMESTAMP, USER, USER_IDX
from pipelines.errors import ColdTestRowsError, DataError
from pipelines.features.config import FeatureConfig, parse_feature_config
from pipelines.features.matrices import interactions_to_csr
from pipelines.features.order import interaction_order_csr
from pipelines.features.splits import split_interactions
from pipelines.features.store import (
    CONTENT_FEATURIZER_DIR,
    FORMAT_VERSION,
    ITEM_FEATURE_NAMES_JSON,
    ITEM_FEATURES_NPZ,
    ITEM_INDEX_FILE,
    MANIFEST_JSON,
    TEST_NPZ,
    TEST_PARQUET,
    TRAIN_NPZ,
    TRAIN_ORDER_NPZ,
    TRAIN_PARQUET,
    USER_INDEX_FILE,
    VALIDATION_NPZ,
    FeatureSet,
    load_feature_set,
    write_index,
    write_json,
)
from pipelines.paths import run_dir
from pipelines.storage import require_partition, write_partition

__all__ = ["FeatureSet", "load_feature_set", "run_features", "run_features_from_split"]

log = logging.getLogger(__name__)


def interaction_files(clean_uri: str | Path) -> list[Path]:
    """The parquet files of a clean partition, sorted by name.

    ``clean_uri`` is ``clean/<key>`` (files under its ``interactions/``) or the ``interactions``
    folder itself. Raises DataError naming the folder when it holds no parquet file.
    """
    root = require_partition(clean_uri, what="clean partition")
    folder = root / "interactions" if (root / "interactions").is_dir() else root
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        raise DataError(f"no interaction parquet files in {folder} (clean_uri={str(clean_uri)!r})")
    return files


def load_encoded_interactions(
    files: list[Path], min_rating: float | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """Read the clean files with Dask, encode them, and bring the result into memory.

    Returns ``(interactions, user_index, item_index, n_rows_read)``. Rows rated below
    ``min_rating`` are dropped before encoding. ``interactions`` is sorted by
    (user_idx, item_idx) so later splits depend on content and seed, not on file layout.
    """
    from pipelines.data.scheduling import read_lake
    from pipelines.data.snapshot import parquet_rows
    from pipelines.features.encoding import encode_in_one_pass

    if parquet_rows(files) == 0:  # footers only
        raise DataError(
            f"{files[0].parent}: no interactions to build features from: the input has no data rows, "
            "or cleaning dropped them all (see the partition's report.json)"
        )
    raw = read_lake(files)
    missing = [c for c in (USER, ITEM, RATING, TIMESTAMP) if c not in raw.columns]
    if missing:
        raise DataError(
            f"{files[0].parent}: interactions have no column(s) {missing} "
            f"(columns: {list(raw.columns)})"
        )
    try:
        frame, user_index, item_index, n_rows = encode_in_one_pass(raw, min_rating)
    except DataError as exc:
        raise DataError(f"{files[0].parent}: {exc}") from None
    # One int64 key per pair: a single-key sort and an adjacent comparison instead of a
    # two-column sort and a hashed duplicated(), several times faster on millions of rows.
    key = frame[USER_IDX].to_numpy(dtype=np.int64) * max(1, len(item_index)) + frame[ITEM_IDX].to_numpy()
    order = np.argsort(key, kind="stable")
    frame, key = frame.take(order).reset_index(drop=True), key[order]
    duplicated = pd.Series(np.concatenate(([False], key[1:] == key[:-1])) if len(key) else np.zeros(0, bool))
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        user = user_index[USER].iloc[int(row[USER_IDX])]
        item = item_index[ITEM].iloc[int(row[ITEM_IDX])]
        raise DataError(
            f"{files[0].parent}: {int(duplicated.sum())} repeated (user_id, item_id) pairs, "
            f"e.g. ({user!r}, {item!r}); the clean contract is one row per pair"
        )
    return frame, user_index, item_index, int(n_rows)


def run_features(
    config: dict[str, Any] | FeatureConfig | None,
    clean_uri: str,
    items_uri: str | None,
    out_root: str,
    run_key: str,
) -> dict[str, Any]:
    """Build ``features/<run_key>/`` under ``out_root`` from a clean partition.

    ``config`` is validated into a :class:`FeatureConfig` (ConfigError names a bad field).
    ``items_uri`` (optional) is item metadata parquet; content features are built from it when
    ``config.content_features``. Returns ``{"features_uri", "n_users", "n_items", "n_train",
    "n_test", "n_validation"}``. Raises DataError naming the file at fault.
    """
    cfg = parse_feature_config(config)
    out = run_dir("features", run_key, root=out_root)
    files = interaction_files(clean_uri)
    frame, user_index, item_index, n_rows = load_encoded_interactions(files, cfg.min_rating)
    parts = split_interactions(frame, cfg)
    inputs = {"clean_uri": str(clean_uri), "items_uri": None if items_uri is None else str(items_uri)}
    return _write_partition(cfg, out, frame, user_index, item_index, n_rows, parts, items_uri, inputs)


def run_features_from_split(
    config: dict[str, Any] | FeatureConfig | None,
    train_clean_uri: str,
    test_clean_uri: str,
    items_uri: str | None,
    out_root: str,
    run_key: str,
) -> dict[str, Any]:
    """Like :func:`run_features`, keeping a split made elsewhere (two clean partitions).

    Ids are encoded over both partitions. A (user, item) pair present in both is a leak and
    raises DataError; test rows of users without any training row are dropped and counted
    as ``cold_dropped`` (no model can rank for them from the training data), as are test rows
    of items without a training row.
    """
    from pipelines.features.splits import SplitResult, drop_cold

    cfg = parse_feature_config(config)
    out = run_dir("features", run_key, root=out_root)
    train_files, test_files = interaction_files(train_clean_uri), interaction_files(test_clean_uri)
    try:
        frame, user_index, item_index, n_rows = load_encoded_interactions(train_files + test_files, cfg.min_rating)
    except DataError as exc:
        if "repeated" not in str(exc):
            raise
        raise DataError(
            f"the given split is not disjoint: {exc} (train: {train_clean_uri}, test: {test_clean_uri})"
        ) from None
    test_pairs = pd.concat([pd.read_parquet(f, columns=[USER, ITEM]) for f in test_files], ignore_index=True)
    keys = pd.MultiIndex.from_arrays(
        [user_index[USER].to_numpy()[frame[USER_IDX].to_numpy()], item_index[ITEM].to_numpy()[frame[ITEM_IDX].to_numpy()]]
    )
    in_test = keys.isin(pd.MultiIndex.from_frame(test_pairs.astype(str)))
    train, test = frame[~in_test].reset_index(drop=True), frame[in_test]
    warm_test, cold = drop_cold(test, train, USER_IDX, ITEM_IDX)
    parts = SplitResult(train=train, test=warm_test.reset_index(drop=True), validation=None, cold_dropped=cold)
    inputs = {"train_clean_uri": str(train_clean_uri), "test_clean_uri": str(test_clean_uri),
              "items_uri": None if items_uri is None else str(items_uri)}
    return _write_partition(cfg, out, frame, user_index, item_index, n_rows, parts, items_uri, inputs)


def check_cold_rows(parts: Any, cfg: FeatureConfig, where: str) -> float:
    """The share of held-out rows dropped as cold; warns above ``cfg.warn_cold_fraction``.

    Raises:
        ColdTestRowsError: the share is above ``cfg.max_cold_fraction`` (names the counts, the
            ceiling and what to change).
    """
    held_out = len(parts.test) + (0 if parts.validation is None else len(parts.validation))
    total = held_out + parts.cold_dropped
    share = parts.cold_dropped / total if total else 0.0
    message = (
        f"{where}: {parts.cold_dropped} of {total} held-out rows ({share:.1%}) belong to users or items "
        f"absent from train and were dropped"
    )
    if share > cfg.max_cold_fraction:
        raise ColdTestRowsError(
            f"{message}, above max_cold_fraction={cfg.max_cold_fraction:g}: metrics would speak for too few "
            "rows; give a test set of users and items seen in training, or another split"
        )
    if share > cfg.warn_cold_fraction:
        log.warning("%s (above warn_cold_fraction=%g): metrics cover the rest only", message, cfg.warn_cold_fraction)
    return share


def _write_partition(cfg, out, frame, user_index, item_index, n_rows, parts, items_uri, inputs) -> dict[str, Any]:
    """Write every file of ``features/<key>/`` under a temporary name, then rename into place."""
    n_users, n_items = len(user_index), len(item_index)
    where = str(inputs.get("test_clean_uri") or inputs.get("clean_uri"))
    check_cold_rows(parts, cfg, where)
    if len(parts.test) == 0:
        raise DataError(
            f"{where}: the {cfg.split} split left no test rows ({len(frame)} interactions of {n_users} users): "
            "no metric could be computed; give users more than one interaction, or another split"
        )

    def csr(part: pd.DataFrame) -> sp.csr_matrix:
        return interactions_to_csr(part, n_users, n_items, implicit=cfg.implicit)

    item_features = None
    if items_uri is not None and cfg.content_features:
        item_features = _content_features(items_uri, item_index, cfg.tfidf_max_features)

    # NPZ without zlib: compressing a 5M-interaction matrix took ~10 s, writing it raw 0.1 s.
    with write_partition(out) as partial:
        write_index(partial / USER_INDEX_FILE, user_index, USER, USER_IDX)
        write_index(partial / ITEM_INDEX_FILE, item_index, ITEM, ITEM_IDX)
        sp.save_npz(partial / TRAIN_NPZ, csr(parts.train), compressed=False)
        sp.save_npz(partial / TRAIN_ORDER_NPZ, interaction_order_csr(parts.train, n_users, n_items), compressed=False)
        sp.save_npz(partial / TEST_NPZ, csr(parts.test), compressed=False)
        if parts.validation is not None:
            sp.save_npz(partial / VALIDATION_NPZ, csr(parts.validation), compressed=False)
        parts.train.to_parquet(partial / TRAIN_PARQUET, index=False)
        parts.test.to_parquet(partial / TEST_PARQUET, index=False)
        if item_features is not None:
            sp.save_npz(partial / ITEM_FEATURES_NPZ, item_features[0], compressed=False)
            write_json(partial / ITEM_FEATURE_NAMES_JSON, item_features[1])
            item_features[2].save(partial / CONTENT_FEATURIZER_DIR)
        n_validation = 0 if parts.validation is None else len(parts.validation)
        counts = {
            "n_users": n_users,
            "n_items": n_items,
            "n_train": len(parts.train),
            "n_test": len(parts.test),
            "n_validation": n_validation,
            "cold_dropped": parts.cold_dropped,
            "below_min_rating": n_rows - len(frame),
        }
        rows = _row_accounting(inputs, counts)
        if rows is not None:  # the whole run's identity, complete from this step on
            write_json(partial / "report.json", {"rows": rows})
        manifest = {
            **counts,
            "rows": rows,
            # n_interactions == n_train + n_test + n_validation + cold_dropped + below_min_rating
            "n_interactions": n_rows,
            "n_item_features": 0 if item_features is None else len(item_features[1]),
            "format_version": FORMAT_VERSION,
            "inputs": inputs,
            "config": cfg.model_dump(mode="json"),
            "files": sorted([p.name for p in partial.iterdir()] + [MANIFEST_JSON]),
        }
        write_json(partial / MANIFEST_JSON, manifest)
    log.info("features %s: %s", out, counts)
    returned = ("n_users", "n_items", "n_train", "n_test", "n_validation", "cold_dropped", "below_min_rating")
    return {"features_uri": str(out), **{key: counts[key] for key in returned}}


def _row_accounting(inputs: dict[str, Any], counts: dict[str, Any]) -> dict[str, int] | None:
    """Every input row's fate (:func:`pipelines.accounting.row_accounting`) from the clean
    partitions' manifests and this step's counts; None when a manifest lacks the counts."""
    import json

    from pipelines.accounting import row_accounting

    uris = [inputs[key] for key in ("clean_uri", "train_clean_uri", "test_clean_uri") if inputs.get(key)]
    manifests = [json.loads((require_partition(uri) / "manifest.json").read_text()) for uri in uris]
    if not all("rows_in" in manifest for manifest in manifests):
        return None
    return row_accounting(manifests, counts)


def _content_features(
    items_uri: str, item_index: pd.DataFrame, max_features: int
) -> tuple[sp.csr_matrix, list[str], Any]:
    """Read item metadata and featurize it: (features, names, fitted ContentFeaturizer).

    Errors name ``items_uri``.
    """
    from pipelines.features.content import fit_item_content_features

    path = Path(items_uri)
    if not path.exists():
        raise DataError(f"item metadata {items_uri!r} does not exist (items_uri)")
    items = pd.read_parquet(path)
    try:
        features, featurizer = fit_item_content_features(items, item_index, max_features=max_features)
    except DataError as exc:
        raise DataError(f"{items_uri}: {exc}") from None
    return features, featurizer.feature_names, featurizer
