"""Where every input row went: the identity each run reports.

``rows_in`` (every line or row the source gave) = rows used for train, test and validation
+ quarantined + duplicates dropped + k-core dropped + below ``min_rating`` + held-out rows
dropped as cold. The features step writes it to its ``report.json``; the pipeline puts it in
the lineage (model card, MLflow parent metrics ``data.*``) and the CLI's JSON.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

#: Where every input row went; ``rows_in`` is the sum of the others (:func:`row_accounting`).
ROW_FATES = ("rows_train", "rows_test", "rows_validation", "rows_quarantined", "duplicates_dropped",
             "kcore_dropped", "below_min_rating", "cold_test_rows")


def row_accounting(cleaned: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                   features: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Every input row's fate, summed over the cleaning results (two for a given train/test split).

    With the features result, ``rows_in == sum(ROW_FATES)``: rows used for train, test and
    validation, quarantined, duplicates, dropped by k-core, below ``min_rating``, and held-out
    rows dropped as cold.

    Raises:
        RuntimeError: the counts do not add up (a bug: some step lost or invented rows).
    """
    parts = [cleaned] if isinstance(cleaned, Mapping) else list(cleaned)
    keys = ("rows_in", "rows_clean", "rows_quarantined", "duplicates_dropped", "kcore_dropped")
    out = {key: sum(int(part[key]) for part in parts) for key in keys}
    if features is None:
        return out
    out.update(
        rows_train=int(features["n_train"]), rows_test=int(features["n_test"]),
        rows_validation=int(features["n_validation"]), below_min_rating=int(features.get("below_min_rating", 0)),
        cold_test_rows=int(features.get("cold_dropped", 0)),
    )
    if out["rows_in"] != sum(out[fate] for fate in ROW_FATES):
        raise RuntimeError(f"row accounting does not add up: {out}")
    return out
