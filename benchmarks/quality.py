"""Ranking quality of every model family on MovieLens, trained exactly as the trigger form trains it.

Each family runs with the form's defaults: the pipeline config comes from
:func:`pipelines.pipeline.from_params` (the function the DAG and the CLI call) with only the data
source, the split and the seed set, so every family gets its own default hyperparameters and its
preferred weighting. The data goes through the DAG's ingest, cleaning and features steps (into a
temporary lake, never into the repo); each candidate is fitted and scored by
:func:`pipelines.training.run.fit_and_evaluate`, the train step's own code.

Protocol (Microsoft Recommenders' MovieLens benchmark): 75/25 split stratified by item
(``FeatureConfig(split="stratified", stratify_by="item")``, their ``python_stratified_split``
with ``filter_by="item"``), seed 42, top-10 with each user's training items excluded, every test
rating relevant.

Tolerance: the families whose seed-42 fit takes under ``--cheap-seconds`` are rerun with the
other ``--seeds`` (the split and the models' seeds both change); a family's tolerance is twice
the larger of its own standard deviation of nDCG@10 over the seeds and the pooled one. Families
too slow for that get the largest tolerance measured. ``tests/integration/test_model_quality_floors.py`` asserts each
family's seed-42 score minus its tolerance.

    .venv/bin/python benchmarks/quality.py                          # every family, ml-latest-small
    .venv/bin/python benchmarks/quality.py --models als ease blend  # a subset (README untouched)
    .venv/bin/python benchmarks/quality.py --models als blend --merge  # a subset's rows into quality.json
    .venv/bin/python benchmarks/quality.py --ml100k /path/to/ml-100k
    .venv/bin/python benchmarks/quality.py --report-only            # README table from quality.json

Writes ``benchmarks/results/quality.json`` and ``quality.md`` (``quality_ml100k.*`` with
``--ml100k``) and, for a full ml-latest-small run, the model table of the README.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
# The data sits beside the checkout, never in it; RECSYS_MOVIELENS_DIR points elsewhere.
DEFAULT_DATA = Path(os.environ.get("RECSYS_MOVIELENS_DIR", ROOT.parent / "shared" / "data" / "ml-latest-small"))
K = 10
SEED = 42
TEST_FRACTION = 0.25
STRATIFY_BY = "item"
METRICS = ("ndcg", "map", "precision", "recall", "coverage", "hit_rate")
TABLE_START = "<!-- model-table:start (written by benchmarks/quality.py) -->"
TABLE_END = "<!-- model-table:end -->"

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


# -- the form's code path --------------------------------------------------------------------------
def form_config(source: str, path: Path, families: Sequence[str], seed: int = SEED):
    """The PipelineConfig the trigger form builds for ``families`` on ``path`` with every other
    field at its default, but the item-stratified 75/25 split and ``seed``."""
    from pipelines.pipeline import from_params

    params: dict[str, Any] = {
        "source": source, "path": str(path), "models": list(families),
        "split": "stratified", "stratify_by": STRATIFY_BY, "test_fraction": TEST_FRACTION, "seed": seed, "k": K,
    }
    return from_params(params)


def ingest_and_clean(config, lake: Path, key: str = "quality") -> tuple[dict, dict]:
    """The DAG's ingest and cleaning steps on ``config.ingest`` (their result dicts)."""
    from pipelines.cleaning.run import run_cleaning
    from pipelines.compute.dask_cluster import dask_client
    from pipelines.data.ingest import run_ingest

    with dask_client(config.dask):
        ingested = run_ingest(config.ingest, str(lake), key)
        cleaned = run_cleaning(config.cleaning, ingested["snapshot_uri"], str(lake), key)
    return ingested, cleaned


def build_features(config, ingested: dict, cleaned: dict, lake: Path, key: str = "quality"):
    """The DAG's features step with ``config.features``; returns (FeatureSet, counts)."""
    from pipelines.compute.dask_cluster import dask_client
    from pipelines.features.run import run_features
    from pipelines.features.store import load_feature_set

    with dask_client(config.dask):
        features = run_features(config.features, cleaned["clean_uri"], ingested.get("items_uri"), str(lake), key)
    counts = {"rows": ingested["rows"], **{k: v for k, v in features.items() if k.startswith("n_")}}
    return load_feature_set(features["features_uri"]), counts


def evaluate_candidate(candidate, features) -> tuple[dict[str, Any], Any]:
    """Fit and score one candidate (a TrainConfig) with the train step's code; returns (row, model).

    A failure becomes a row with ``error`` (and model None) so one family cannot hide the others.
    """
    from pipelines.training.run import fit_and_evaluate

    row: dict[str, Any] = {"model": candidate.model, "weighting": candidate.resolved_weighting().scheme}
    started = time.perf_counter()
    try:
        model, metrics, _ = fit_and_evaluate(candidate, features)
    except Exception as exc:
        log.error("%s failed:\n%s", candidate.model, traceback.format_exc())
        return {**row, "error": f"{type(exc).__name__}: {exc}", "seconds": round(time.perf_counter() - started, 1)}, None
    row.update({f"{n}@{K}": round(float(metrics[f"{n}@{K}"]), 6) for n in METRICS})
    row.update(
        n_users=int(metrics["n_users"]),
        fit_seconds=round(metrics["fit_seconds"], 2),
        eval_seconds=round(time.perf_counter() - started - metrics["fit_seconds"], 2),
        params=model.config.hyperparameters(),
    )
    fitted = model.fitted_params() if hasattr(model, "fitted_params") else {}
    if fitted:
        row["fitted_params"] = fitted
    return row, model


# -- tolerance ------------------------------------------------------------------------------------
def tolerances(by_seed: dict[str, dict[int, float]], families: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per family: ``tolerance`` on nDCG@K and how it was measured.

    Twice the larger of the family's standard deviation over seeds and the pooled one (a few
    seeds make a family's own estimate noisy, so it never goes below the pooled); families run
    on one seed get the largest tolerance measured.
    """
    spread = {name: list(scores.values()) for name, scores in by_seed.items() if len(scores) >= 2}
    if not spread:
        return {name: {"tolerance": 0.01, "tolerance_from": "no family ran on several seeds: 0.01"} for name in families}
    pooled = (
        sum((len(v) - 1) * statistics.variance(v) for v in spread.values()) / sum(len(v) - 1 for v in spread.values())
    ) ** 0.5
    measured = {name: 2.0 * max(statistics.stdev(v), pooled) for name, v in spread.items()}
    out = {}
    for name in families:
        if name in measured:
            out[name] = {"tolerance": round(measured[name], 4), "tolerance_from": f"{len(spread[name])} seeds"}
        else:
            out[name] = {"tolerance": round(max(measured.values()), 4), "tolerance_from": "largest measured (one seed: too slow)"}
    return out


def merge_reports(recorded: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """``recorded`` with the rows (and errors) of the families ``fresh`` ran replaced by ``fresh``'s.

    Every tolerance is recomputed from the merged rows' ``ndcg_by_seed`` (the pooled deviation
    spans all families). The protocol and dataset must agree; raises ValueError when they do not.
    """
    for key in ("dataset", "protocol"):
        if {k: v for k, v in recorded[key].items() if k != "path"} != {k: v for k, v in fresh[key].items() if k != "path"}:
            raise ValueError(f"cannot merge: the {key} differs from the recorded report's; rerun every family")
    rerun = {row["model"] for row in fresh["leaderboard"]} | {row["model"] for row in fresh["errors"]}
    rows = {row["model"]: row for row in recorded["leaderboard"] if row["model"] not in rerun}
    rows.update({row["model"]: row for row in fresh["leaderboard"]})
    by_seed = {name: {int(s): v for s, v in row.get("ndcg_by_seed", {}).items()} for name, row in rows.items()}
    for name, values in tolerances(by_seed, list(rows)).items():
        rows[name].update(values)
    merged = dict(recorded)
    merged["leaderboard"] = sorted(rows.values(), key=lambda r: r[f"ndcg@{K}"], reverse=True)
    merged["errors"] = [e for e in recorded["errors"] if e["model"] not in rerun] + fresh["errors"]
    merged["rerun"] = [*[r for r in recorded.get("rerun", []) if r["models"] and not set(r["models"]) <= rerun],
                       {"created_at": fresh["created_at"], "models": sorted(rerun), "machine": fresh["machine"]}]
    return merged


# -- reports --------------------------------------------------------------------------------------
def _summary(name: str) -> str:
    from pipelines.models import model_class

    return model_class(name).summary


def readme_table(report: dict[str, Any]) -> str:
    """The README's model table and its protocol note, from a quality report."""
    lines = [
        f"| model | what it is for | nDCG@{K} | MAP@{K} | Precision@{K} | Recall@{K} | fit s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["leaderboard"]:
        lines.append(
            f"| `{row['model']}` | {_summary(row['model'])} | {row[f'ndcg@{K}']:.3f} | {row[f'map@{K}']:.3f} | "
            f"{row[f'precision@{K}']:.3f} | {row[f'recall@{K}']:.3f} | {row['fit_seconds']:.1f} |"
        )
    for row in report["errors"]:
        lines.append(f"| `{row['model']}` | {_summary(row['model'])} | failed | | | | |")
    protocol = report["protocol"]
    lines += [
        "",
        f"Measured by `benchmarks/quality.py` on `../shared/data/ml-latest-small` with the trigger form's "
        f"defaults for every family (`from_params({{\"models\": [family]}})`, the DAG's and the CLI's code path): "
        f"the Microsoft Recommenders MovieLens benchmark split, {int((1 - TEST_FRACTION) * 100)}/"
        f"{int(TEST_FRACTION * 100)} **stratified by item**, seed {protocol['seed']}, K={K}, training items "
        "excluded, every test rating relevant. Fit seconds are on "
        f"{report['machine']['cpus']} shared CPU cores. `blend` chooses its members' weights on a validation "
        "carve of train and refits them on all of train. The tolerance of each row (twice the standard "
        "deviation of nDCG@10 over seeds, see the script) and the ML-100K reference rows are in `benchmarks/results/quality.md`.",
    ]
    return "\n".join(lines)


def update_readme(report: dict[str, Any], path: Path = README) -> bool:
    """Replace the text between the README's model-table markers; False when they are absent."""
    text = path.read_text()
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        log.warning("%s has no %r ... %r markers: README not updated", path, TABLE_START, TABLE_END)
        return False
    path.write_text(text[: start + len(TABLE_START)] + "\n" + readme_table(report) + "\n" + text[end:])
    return True


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    rows = report["leaderboard"]
    lines = [
        f"# Ranking quality on {report['dataset']['name']}",
        "",
        f"Generated {report['created_at']} by `benchmarks/quality.py` ({report['machine']['cpus']} CPUs, "
        f"load average {report['machine']['load_average'][0]:.1f}). {report['protocol']['description']}",
        "",
        f"Data: {report['dataset']['counts']}.",
        "",
        f"| rank | model | weighting | nDCG@{K} | tolerance | MAP@{K} | Precision@{K} | Recall@{K} | "
        f"coverage@{K} | fit s |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rank, row in enumerate(rows, start=1):
        lines.append(
            f"| {rank} | {row['model']} | {row['weighting']} | {row[f'ndcg@{K}']:.4f} | {row['tolerance']:.4f} | "
            f"{row[f'map@{K}']:.4f} | {row[f'precision@{K}']:.4f} | {row[f'recall@{K}']:.4f} | "
            f"{row[f'coverage@{K}']:.4f} | {row['fit_seconds']:.1f} |"
        )
    for row in report["errors"]:
        lines.append(f"| - | {row['model']} | {row['weighting']} | failed: {row['error']} | | | | | | |")
    lines += ["", "## Tolerance", "", report["protocol"]["tolerance"], ""]
    lines += ["| model | nDCG@10 by seed | tolerance from |", "| --- | --- | --- |"]
    for row in rows:
        seeds = ", ".join(f"{s}: {v:.4f}" for s, v in row.get("ndcg_by_seed", {}).items())
        lines.append(f"| {row['model']} | {seeds} | {row['tolerance_from']} |")
    chosen = [r for r in rows if r.get("fitted_params")]
    if chosen:
        lines += ["", "## Chosen at fit on validation carves of train", ""]
        lines += [f"- `{r['model']}`: {r['fitted_params']}" for r in chosen]
    lines += [
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
    for name, ndcg, map_, prec, rec in REFERENCE_ML100K:
        lines.append(f"| {name} | {ndcg:.4f} | {map_:.4f} | {prec:.4f} | {rec:.4f} |")
    path.write_text("\n".join(lines) + "\n")


def _versions() -> dict[str, str]:
    found = {}
    for name in ("numpy", "scipy", "scikit-learn", "torch", "implicit", "gensim"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


# -- main -----------------------------------------------------------------------------------------
def run(
    source: str, data: Path, families: Sequence[str], seeds: Sequence[int], cheap_seconds: float, lake: Path
) -> dict[str, Any]:
    """Every family at ``SEED``, the cheap ones again at each of ``seeds``; the report dict."""
    config = form_config(source, data, families, SEED)
    ingested, cleaned = ingest_and_clean(config, lake)
    features, counts = build_features(config, ingested, cleaned, lake, f"seed{SEED}")
    log.info("features: %s", counts)
    rows, errors = [], []
    by_seed: dict[str, dict[int, float]] = {}
    for candidate in config.candidates:
        log.info("fitting %s", candidate.model)
        row, model = evaluate_candidate(candidate, features)
        del model
        if "error" in row:
            errors.append(row)
            continue
        rows.append(row)
        by_seed[row["model"]] = {SEED: row[f"ndcg@{K}"]}
        log.info("%s: nDCG@%d %.4f (fit %.1fs)", row["model"], K, row[f"ndcg@{K}"], row["fit_seconds"])
    cheap = [r["model"] for r in rows if r["fit_seconds"] <= cheap_seconds]
    for seed in seeds:
        if seed == SEED or not cheap:
            continue
        seeded = form_config(source, data, cheap, seed)
        seed_features, _ = build_features(seeded, ingested, cleaned, lake, f"seed{seed}")
        for candidate in seeded.candidates:
            if candidate.model not in cheap:
                continue
            row, _ = evaluate_candidate(candidate, seed_features)
            if "error" not in row:
                by_seed[candidate.model][seed] = row[f"ndcg@{K}"]
                log.info("%s seed %d: nDCG@%d %.4f", candidate.model, seed, K, row[f"ndcg@{K}"])
    tol = tolerances(by_seed, [r["model"] for r in rows])
    for row in rows:
        row.update(tol[row["model"]], ndcg_by_seed={str(s): v for s, v in sorted(by_seed[row["model"]].items())})
    split = f"{int((1 - TEST_FRACTION) * 100)}/{int(TEST_FRACTION * 100)} stratified by {STRATIFY_BY}"
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": {"name": "MovieLens ml-latest-small" if source == "movielens" else "MovieLens-100K",
                    "path": str(data), "counts": counts},
        "protocol": {
            "entry_point": "pipelines.pipeline.from_params (the trigger form's defaults for every family)",
            "split": f"stratified, stratify_by={STRATIFY_BY!r} (pipelines.features.splits.item_stratified_split)",
            "test_fraction": TEST_FRACTION,
            "seed": SEED,
            "k": K,
            "description": f"Microsoft Recommenders MovieLens benchmark split ({split}), seed {SEED}, top-{K} with "
            "training items excluded, every test rating relevant; each family with the trigger form's defaults "
            "(from_params), fit and scored by pipelines.training.run.fit_and_evaluate.",
            "tolerance": f"Families fitting in under {cheap_seconds:g} s at seed {SEED} were rerun with seeds "
            f"{[s for s in seeds if s != SEED]} (split and model seeds both change); tolerance = 2 x the larger of "
            "the family's sample standard deviation of nDCG@10 over the seeds and the pooled one (over every "
            "family so measured). Slower families get the largest tolerance measured.",
            "seeds": [SEED, *[s for s in seeds if s != SEED]],
            "cheap_seconds": cheap_seconds,
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
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from pipelines.models import model_names

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ml-latest-small folder")
    parser.add_argument("--ml100k", type=Path, default=None, help="a MovieLens-100K folder (u.data, u.item) instead")
    parser.add_argument("--models", nargs="+", default=None, help="families to run (default: every registered one)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[SEED, 43, 44], help="seeds for the tolerance")
    parser.add_argument(
        "--cheap-seconds", type=float, default=60.0, help="families fitting faster than this get every seed"
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON path (markdown beside it)")
    parser.add_argument("--work-dir", type=Path, default=None, help="lake for the steps (default: a temporary folder)")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite quality.md and the README's table from quality.json, no run"
    )
    parser.add_argument(
        "--merge", action="store_true",
        help="replace only the rows of --models in the existing report (tolerances recomputed), then its markdown and README",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)

    if args.ml100k is not None:
        source, data = "movielens100k", args.ml100k
        output = args.output or RESULTS / "quality_ml100k.json"
    else:
        source, data = "movielens", args.data
        output = args.output or RESULTS / "quality.json"
    if args.report_only:
        report = json.loads(output.read_text())
        write_markdown(output.with_suffix(".md"), report)
        if source == "movielens" and args.output is None:
            update_readme(report)
        return report
    registered = model_names()
    families = args.models or registered
    unknown = sorted(set(families) - set(registered))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; registered: {', '.join(registered)}")

    with tempfile.TemporaryDirectory(prefix="quality-lake-") as tmp:
        report = run(source, data.resolve(), families, args.seeds, args.cheap_seconds, args.work_dir or Path(tmp))
    if args.merge:
        report = merge_reports(json.loads(output.read_text()), report)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    write_markdown(output.with_suffix(".md"), report)
    log.info("wrote %s and %s", output, output.with_suffix(".md"))
    if source == "movielens" and (args.models is None or args.merge) and args.output is None and update_readme(report):
        log.info("updated the model table of %s", README)
    return report


if __name__ == "__main__":
    main()
