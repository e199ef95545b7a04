"""Ranking quality of every registered model on MovieLens, through the platform's own steps.

Protocol (Microsoft Recommenders' MovieLens benchmark): per-user stratified 75/25 split with
seed 42 (:func:`pipelines.features.splits.stratified_split`), top-10 lists with each user's
training items excluded, every test rating relevant. The data goes through the same ingest,
cleaning and features steps as the DAG (into a temporary lake, never into the repo), and each
model through :func:`pipelines.training.run.fit_and_evaluate`, the train step's own code, with
its default hyperparameters and its preferred weighting (the family's ``preferred_weighting``,
unless ``WEIGHTING_OVERRIDES`` says otherwise). Content
models get item features from movies.csv and tags.csv (:mod:`pipelines.features.content`).

An ensemble of the best two and three models (z-score or rank average of their scores, see
:class:`ScoreEnsemble`) is evaluated the same way. Its members are chosen by their test nDCG,
so its row is an optimistic estimate; a deployable ensemble chooses members and weights on a
validation split (see the "ensemble" section of the report this script writes).

    .venv/bin/python benchmarks/quality.py                                # every model, ml-latest-small
    .venv/bin/python benchmarks/quality.py --models als ease popularity  # a subset
    .venv/bin/python benchmarks/quality.py --ml100k /path/to/ml-100k      # MovieLens-100K (u.data, u.item)

Writes ``benchmarks/results/quality.json`` and ``quality.md`` (``quality_ml100k.*`` with
``--ml100k``). Reference rows from Microsoft Recommenders are on ML-100K, a different dataset.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.models.base import ModelConfig, Recommender  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-latest-small"
K = 10
SEED = 42
TEST_FRACTION = 0.25

# Weighting per family when it should differ from the family's own ``preferred_weighting`` (the
# scheme it was tuned with, applied by TrainConfig(weighting=None)); families not listed use theirs.
WEIGHTING_OVERRIDES: dict[str, dict[str, Any]] = {}

# Families someone is adding; listed so the report says which were absent from this run.
EXPECTED_FAMILIES = (
    "popularity",
    "als",
    "svd",
    "nmf",
    "ease",
    "itemknn",
    "bpr",
    "ncf",
    "multvae",
    "item2vec",
    "sequence",
    "content",
    "hybrid",
)

# Microsoft Recommenders, README "Algorithm Comparison": MovieLens 100k, stratified 75/25, k=10,
# 15 epochs. A DIFFERENT dataset (943 users, 1682 movies) from ml-latest-small: context, not a target.
REFERENCE_SOURCE = "https://github.com/recommenders-team/recommenders#algorithm-comparison"
REFERENCE_ML100K = [
    # algorithm, nDCG@10, MAP, Precision@10, Recall@10
    ("BiVAE", 0.475077, 0.146126, 0.411771, 0.219145),
    ("BPR (Cornac)", 0.441997, 0.132478, 0.388229, 0.212522),
    ("LightGCN", 0.419846, 0.088526, 0.379626, 0.144336),
    ("NCF", 0.396118, 0.107720, 0.347296, 0.180775),
    ("SAR", 0.382461, 0.110591, 0.330753, 0.176385),
    ("FastAI", 0.147866, 0.025503, 0.130329, 0.053824),
    ("SVD (Surprise, rating prediction)", 0.095930, 0.012873, 0.091198, 0.032783),
    ("ALS (Spark, explicit ratings)", 0.044239, 0.004732, 0.048462, 0.017796),
]

log = logging.getLogger("benchmarks.quality")


# -- ensemble ------------------------------------------------------------------------------------
class EnsembleConfig(ModelConfig):
    """How member scores are combined (the members themselves are fitted models)."""

    combine: str = "zscore"
    """``zscore``: each member's scores standardised per user, then averaged. ``rank``: each
    member's per-user ranks turned into Borda points in [0, 1], then averaged."""


class ScoreEnsemble(Recommender):
    """A weighted average of already fitted members' per-user normalised scores.

    Behaves like any registered model for evaluation (``recommend`` excludes seen items, unknown
    users get the members' combined fallback). ``fit`` is not supported: members are fitted by
    the train step first, each with its own weighting, then combined.
    """

    name: ClassVar[str] = "ensemble"
    config_class: ClassVar[type[ModelConfig]] = EnsembleConfig

    def __init__(
        self, members: Sequence[Recommender], weights: Sequence[float] | None = None, combine: str = "zscore"
    ) -> None:
        if combine not in ("zscore", "rank"):
            raise ValueError(f"combine must be 'zscore' or 'rank', got {combine!r}")
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        shapes = {(m.n_users, m.n_items) for m in members}
        if len(shapes) != 1:
            raise ValueError(f"members were fitted on different matrices: {sorted(shapes)}")
        super().__init__(EnsembleConfig(combine=combine))
        self.members = list(members)
        self.weights = np.asarray(weights if weights is not None else [1.0] * len(members), dtype=np.float64)
        self.weights = self.weights / self.weights.sum()
        self.n_users, self.n_items = shapes.pop()
        self.item_popularity_ = getattr(members[0], "item_popularity_", None)

    def fit(self, train, *, item_features=None, validation=None, callback=None):  # noqa: D102
        raise NotImplementedError("ScoreEnsemble combines fitted members; fit each member instead")

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        total = np.zeros((len(user_idx), self.n_items), dtype=np.float64)
        for weight, member in zip(self.weights, self.members, strict=True):
            total += weight * _normalise(member.score(user_idx).astype(np.float64), self.config.combine)
        return total.astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError("ScoreEnsemble lives only inside the benchmark")

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError("ScoreEnsemble lives only inside the benchmark")


def _normalise(scores: np.ndarray, combine: str) -> np.ndarray:
    """Per-row z-scores, or Borda points (best item 1, worst 0), of a users x items block."""
    scores = np.where(np.isfinite(scores), scores, np.nan)
    if combine == "zscore":
        mean = np.nanmean(scores, axis=1, keepdims=True)
        std = np.nanstd(scores, axis=1, keepdims=True)
        out = (scores - mean) / np.where(std > 0, std, 1.0)
    else:
        ranks = np.argsort(np.argsort(np.nan_to_num(scores, nan=-np.inf), axis=1, kind="stable"), axis=1)
        out = ranks / max(scores.shape[1] - 1, 1)
    return np.nan_to_num(out, nan=np.nanmin(out) if np.isfinite(out).any() else 0.0)


# -- data ----------------------------------------------------------------------------------------
def build_features(source: str, path: Path, lake: Path):
    """Ingest, clean and featurize ``path`` with the DAG's step functions; returns the FeatureSet."""
    from pipelines.cleaning.config import CleaningConfig
    from pipelines.cleaning.run import run_cleaning
    from pipelines.compute.dask_cluster import dask_client
    from pipelines.data.config import IngestConfig
    from pipelines.data.ingest import run_ingest
    from pipelines.features.config import FeatureConfig
    from pipelines.features.run import run_features
    from pipelines.features.store import load_feature_set

    features_config = FeatureConfig(split="stratified", test_fraction=TEST_FRACTION, seed=SEED, content_features=True)
    with dask_client({"threads_per_worker": 2}):
        ingested = run_ingest(IngestConfig(source=source, path=str(path)), str(lake), "quality")
        cleaned = run_cleaning(CleaningConfig(), ingested["snapshot_uri"], str(lake), "quality")
        features = run_features(features_config, cleaned["clean_uri"], ingested.get("items_uri"), str(lake), "quality")
    counts = {"rows": ingested["rows"], **{k: v for k, v in features.items() if k.startswith("n_")}}
    return load_feature_set(features["features_uri"]), counts


# -- models --------------------------------------------------------------------------------------
def evaluate_family(name: str, features) -> tuple[dict[str, Any], Recommender | None]:
    """Fit and evaluate one family through the train step's code; a crash becomes an error row."""
    from pipelines.features.weighting import WeightingConfig
    from pipelines.models import model_class
    from pipelines.training.config import TrainConfig
    from pipelines.training.run import fit_and_evaluate

    override = WEIGHTING_OVERRIDES.get(name)
    weighting = WeightingConfig(**override) if override else None
    resolved = weighting or WeightingConfig(**model_class(name).preferred_weighting)
    row: dict[str, Any] = {
        "model": name,
        "kind": "model",
        "weighting": resolved.scheme,
        "weighting_config": resolved.model_dump(),
    }
    if model_class(name).requires_item_features and features.item_features is None:
        return {**row, "error": "needs item features and the data has none"}, None
    started = time.perf_counter()
    try:
        config = TrainConfig(model=name, weighting=weighting, k=K, plot_ks=(K,))
        model, metrics, _ = fit_and_evaluate(config, features)
    except Exception as exc:  # one family failing must not hide the others' results
        log.error("%s failed:\n%s", name, traceback.format_exc())
        return {**row, "error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - started}, None
    total = time.perf_counter() - started
    row.update(_metric_columns(metrics))
    row.update(
        fit_seconds=round(metrics["fit_seconds"], 3),
        eval_seconds=round(total - metrics["fit_seconds"], 3),
        params=model.config.hyperparameters(),
    )
    return row, model


def evaluate_ensemble(
    members: list[tuple[str, Recommender]],
    features,
    combine: str,
    weights: Sequence[float] | None = None,
    label: str = "",
) -> dict[str, Any]:
    """Test metrics of a :class:`ScoreEnsemble` of fitted ``members`` (same code path as a model)."""
    from pipelines.evaluation.evaluate import metrics_at_ks

    ensemble = ScoreEnsemble([m for _, m in members], weights=weights, combine=combine)
    started = time.perf_counter()
    metrics = metrics_at_ks(ensemble, features.train, features.test, ks=(K,))[K]
    names = [n for n, _ in members]
    return {
        "model": f"ensemble-{combine}{label}({'+'.join(names)})",
        "kind": "ensemble",
        "members": names,
        "combine": combine,
        "weights": [round(float(w), 3) for w in ensemble.weights],
        **_metric_columns(metrics),
        "eval_seconds": round(time.perf_counter() - started, 3),
    }


def evaluate_tuned(name: str, features, n_trials: int) -> dict[str, Any]:
    """``name`` tuned by :func:`pipelines.tuning.study.tune_model` on a validation carve of train
    (20 % per user, seed 42), then refit on all of train and scored once on test."""
    from pipelines.training.config import TrainConfig
    from pipelines.training.run import fit_and_evaluate
    from pipelines.tuning.study import tune_model

    override = WEIGHTING_OVERRIDES.get(name)
    base = TrainConfig(model=name, weighting=override, k=K, plot_ks=(K,))
    started = time.perf_counter()
    result = tune_model(
        base, features, {"n_trials": n_trials, "seed": SEED, "sampler_startup_trials": max(3, n_trials // 3)}
    )
    tune_seconds = time.perf_counter() - started
    model, metrics, _ = fit_and_evaluate(result.config, features)
    default_value = result.trials.loc[result.trials["number"] == 0, "value"].iloc[0]
    return {
        "model": f"{name} (tuned)",
        "kind": "tuned",
        "weighting": result.config.resolved_weighting().scheme,
        **_metric_columns(metrics),
        "fit_seconds": round(metrics["fit_seconds"], 3),
        "tune_seconds": round(tune_seconds, 1),
        "best_params": result.best_params,
        "validation_ndcg_best": round(result.best_value, 6),
        "validation_ndcg_default": round(float(default_value), 6),
        "n_trials": result.n_trials,
        "n_pruned": result.n_pruned,
        "n_failed": result.n_failed,
    }


def validation_weighted_ensembles(
    names: Sequence[str], features, fitted: dict[str, Recommender], sizes: Sequence[int], combine: str = "zscore"
) -> list[dict[str, Any]]:
    """Ensembles whose members and weights are chosen on validation only, then scored once on test.

    Every candidate is refit on train minus a per-user validation carve (20 %, seed 42); members
    are the best ``size`` by validation nDCG, weights the best point of a 0.1-step simplex grid
    on validation. The chosen combination of the models fitted on all of train is then
    evaluated on test: no test data informs any choice.
    """
    import dataclasses
    import itertools

    from pipelines.evaluation.metrics import ranking_metrics
    from pipelines.tuning.validation import carve_validation, restrict_order

    fit, validation = carve_validation(features.train, 0.2, SEED)
    on_validation = dataclasses.replace(
        features, train=fit, test=validation, validation=None, train_order=restrict_order(features.train_order, fit)
    )
    val_rows, val_models, val_errors = {}, {}, {}
    for name in names:
        log.info("fitting %s on train minus validation", name)
        row, model = evaluate_family(name, on_validation)
        if model is None:
            val_errors[name] = row["error"]
        else:
            val_rows[name], val_models[name] = row[f"ndcg@{K}"], model
    ranked = sorted(val_rows, key=val_rows.get, reverse=True)
    users = np.flatnonzero(np.diff(validation.indptr) > 0)
    seen = fit[users].tocoo()
    normalised = {}
    for name in ranked[: max(sizes, default=0)]:
        block = _normalise(val_models[name].score(users).astype(np.float64), combine)
        block[seen.row, seen.col] = -np.inf  # training items are never recommended
        normalised[name] = block

    def validation_ndcg(members: Sequence[str], weights: Sequence[float]) -> float:
        total = sum(w * normalised[m] for w, m in zip(weights, members, strict=True) if w > 0)
        top = np.argpartition(-total, K - 1, axis=1)[:, :K]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(total, top, axis=1), axis=1), axis=1)
        return ranking_metrics(top, validation[users], K, fit.shape[1])[f"ndcg@{K}"]

    rows = []
    for size in sorted(set(sizes)):
        if size < 2 or len(ranked) < size:
            continue
        members = ranked[:size]
        grid = [w for w in itertools.product(range(11), repeat=size) if sum(w) == 10 and min(w) > 0]
        scored = [(validation_ndcg(members, np.array(w) / 10), w) for w in grid]
        best_value, best = max(scored)
        log.info("validation ensemble %s: weights %s, validation nDCG@%d %.4f", members, best, K, best_value)
        row = evaluate_ensemble(
            [(m, fitted[m]) for m in members], features, combine, weights=np.array(best) / 10, label="-validated"
        )
        rows.append(
            {
                **row,
                "validation_ndcg": round(best_value, 6),
                "validation_singles": val_rows,
                "validation_errors": val_errors,
            }
        )
    return rows


def _metric_columns(metrics: dict[str, Any]) -> dict[str, Any]:
    names = ("ndcg", "map", "precision", "recall", "coverage", "hit_rate")
    return {f"{n}@{K}": round(float(metrics[f"{n}@{K}"]), 6) for n in names} | {"n_users": int(metrics["n_users"])}


# -- report --------------------------------------------------------------------------------------
def write_markdown(path: Path, report: dict[str, Any]) -> None:
    rows = report["leaderboard"]
    floor = next((r[f"ndcg@{K}"] for r in rows if r["model"] == "popularity"), None)
    lines = [
        f"# Ranking quality on {report['dataset']['name']}",
        "",
        f"Generated {report['created_at']} by `benchmarks/quality.py` ({report['machine']['cpus']} CPUs, "
        f"{report['machine']['platform']}). Protocol: {report['protocol']['description']}",
        "",
        f"Data: {report['dataset']['counts']}.",
        "",
        f"| rank | model | weighting | nDCG@{K} | MAP@{K} | Precision@{K} | Recall@{K} | coverage@{K} | fit s |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rank, row in enumerate(rows, start=1):
        name = row["model"] + (" (floor)" if row["model"] == "popularity" else "")
        fit = f"{row['fit_seconds']:.2f}" if "fit_seconds" in row else "(members)"
        lines.append(
            f"| {rank} | {name} | {row.get('weighting', '-')} | {row[f'ndcg@{K}']:.4f} | {row[f'map@{K}']:.4f} | "
            f"{row[f'precision@{K}']:.4f} | {row[f'recall@{K}']:.4f} | {row[f'coverage@{K}']:.4f} | {fit} |"
        )
    if floor is not None:
        lines += ["", f"Popularity floor: nDCG@{K} {floor:.4f}. Goal: nDCG@{K} >= 0.42 on ml-latest-small."]
    if report["errors"]:
        lines += ["", "Failed or skipped:", ""] + [f"- `{e['model']}`: {e['error']}" for e in report["errors"]]
    if report["absent_families"]:
        lines += [
            "",
            "Not registered when this ran (absent from the table): "
            + ", ".join(f"`{n}`" for n in report["absent_families"])
            + ".",
        ]
    lines += [
        "",
        "Rows marked `(tuned)` were tuned with `pipelines.tuning` (Optuna TPE, seed 42) on a 20 % per-user "
        "validation carve of train, refit on all of train with the best parameters and scored once on test.",
        "",
        "Ensemble rows average the per-user z-scores (or Borda ranks) of the best 2 or 3 single models "
        "by test nDCG (`ScoreEnsemble` in the script). Choosing the members on test makes these rows "
        "optimistic: a deployable `ensemble` family picks members and weights on a validation split "
        "(`pipelines.tuning`) and is refit on train + validation before its one test evaluation. "
        "Rows named `-validated` do that here: members and weights (0.1-step grid) are chosen by nDCG on "
        "a 20 % per-user validation carve of train, with every model refit on the rest; only the chosen "
        "combination of the full-train models is then scored on test.",
        "",
        "## Reference: Microsoft Recommenders on MovieLens-100K (different dataset)",
        "",
        f"From {REFERENCE_SOURCE} (stratified 75/25, k=10). ML-100K has 943 users and 1,682 movies; "
        "ml-latest-small has 610 users and 9,724 rated movies (far sparser), so the numbers are context, "
        "not a like-for-like target.",
        "",
        f"| algorithm | nDCG@{K} | MAP | Precision@{K} | Recall@{K} |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for ref in report["reference_ml100k"]:
        lines.append(
            f"| {ref['model']} | {ref[f'ndcg@{K}']:.4f} | {ref['map']:.4f} | "
            f"{ref[f'precision@{K}']:.4f} | {ref[f'recall@{K}']:.4f} |"
        )
    path.write_text("\n".join(lines) + "\n")


def _versions() -> dict[str, str]:
    found = {}
    for name in ("numpy", "scipy", "scikit-learn", "torch", "optuna"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from pipelines.models import model_names

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="ml-latest-small folder (ratings.csv, movies.csv, tags.csv)"
    )
    parser.add_argument(
        "--ml100k", type=Path, default=None, help="a MovieLens-100K folder (u.data, u.item) instead of --data"
    )
    parser.add_argument("--models", nargs="+", default=None, help="families to run (default: every registered one)")
    parser.add_argument(
        "--ensemble-sizes", nargs="*", type=int, default=[2, 3], help="ensemble the best N models (none: no ensemble)"
    )
    parser.add_argument(
        "--tune", nargs="*", default=[], help="also tune these families (pipelines.tuning) and add a '(tuned)' row each"
    )
    parser.add_argument("--tune-trials", type=int, default=20, help="trials per tuned family")
    parser.add_argument(
        "--validated-ensemble",
        action="store_true",
        help="also choose ensemble members and weights on a validation carve (refits every model once more)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON path (markdown beside it); default results/quality[_ml100k].json",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="lake for the intermediate steps (default: a temporary folder)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)

    if args.ml100k is not None:
        source, data, dataset = "movielens100k", args.ml100k, "MovieLens-100K"
        output = args.output or RESULTS / "quality_ml100k.json"
    else:
        source, data, dataset = "movielens", args.data, "MovieLens ml-latest-small"
        output = args.output or RESULTS / "quality.json"
    registered = model_names()
    wanted = args.models or registered
    unknown = sorted((set(wanted) | set(args.tune)) - set(registered))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; registered: {', '.join(registered)}")

    with tempfile.TemporaryDirectory(prefix="quality-lake-") as tmp:
        lake = args.work_dir or Path(tmp)
        features, counts = build_features(source, data.resolve(), lake)
        log.info("features: %s", counts)
        rows, errors, fitted = [], [], {}
        for name in wanted:
            log.info("fitting %s", name)
            row, model = evaluate_family(name, features)
            (errors if "error" in row else rows).append(row)
            if model is not None:
                fitted[name] = model
                log.info("%s: nDCG@%d %.4f (fit %.1fs)", name, K, row[f"ndcg@{K}"], row["fit_seconds"])
        singles = sorted((r for r in rows if r["model"] != "popularity"), key=lambda r: r[f"ndcg@{K}"], reverse=True)
        for size in sorted(set(args.ensemble_sizes)):
            if size >= 2 and len(singles) >= size:
                members = [(r["model"], fitted[r["model"]]) for r in singles[:size]]
                for combine in ("zscore", "rank"):
                    rows.append(evaluate_ensemble(members, features, combine))
                    log.info("%s: nDCG@%d %.4f", rows[-1]["model"], K, rows[-1][f"ndcg@{K}"])
        for name in args.tune:
            log.info("tuning %s (%d trials)", name, args.tune_trials)
            try:
                rows.append(evaluate_tuned(name, features, args.tune_trials))
            except Exception as exc:  # recorded like a failed model
                log.error("tuning %s failed:\n%s", name, traceback.format_exc())
                errors.append({"model": f"{name} (tuned)", "error": f"{type(exc).__name__}: {exc}"})
                continue
            log.info("%s: nDCG@%d %.4f with %s", rows[-1]["model"], K, rows[-1][f"ndcg@{K}"], rows[-1]["best_params"])
        if args.validated_ensemble:
            for row in validation_weighted_ensembles(
                [r["model"] for r in singles], features, fitted, args.ensemble_sizes
            ):
                rows.append(row)
                log.info("%s %s: nDCG@%d %.4f", row["model"], row["weights"], K, row[f"ndcg@{K}"])

    report = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": {"name": dataset, "path": str(data), "counts": counts},
        "protocol": {
            "split": "per-user stratified (pipelines.features.splits.stratified_split)",
            "test_fraction": TEST_FRACTION,
            "seed": SEED,
            "k": K,
            "description": f"per-user stratified {int((1 - TEST_FRACTION) * 100)}/{int(TEST_FRACTION * 100)} split, "
            f"seed {SEED}, top-{K} with training items excluded, every test rating relevant, "
            "default hyperparameters, fit and scored by pipelines.training.run.fit_and_evaluate.",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average": list(os.getloadavg()),
            "versions": _versions(),
        },
        "leaderboard": sorted(rows, key=lambda r: r[f"ndcg@{K}"], reverse=True),
        "errors": errors,
        "absent_families": [n for n in EXPECTED_FAMILIES if n not in registered],
        "reference_ml100k": [
            {
                "model": name,
                f"ndcg@{K}": ndcg,
                "map": map_,
                f"precision@{K}": prec,
                f"recall@{K}": rec,
                "dataset": "MovieLens-100K",
                "source": REFERENCE_SOURCE,
            }
            for name, ndcg, map_, prec, rec in REFERENCE_ML100K
        ],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    write_markdown(output.with_suffix(".md"), report)
    log.info("wrote %s and %s", output, output.with_suffix(".md"))
    return report


if __name__ == "__main__":
    main()
