"""Warm start against cold fit on MovieLens in time order: quality at equal iterations, time to equal quality.

Protocol: ml-latest-small ratings sorted by timestamp. The champion is fit on the first 80% of
rows; the new model on the first 90% (the data a retrain sees), each fit with its own id
encoding, as two pipeline runs have; the warm start maps raw ids between them
(:meth:`pipelines.models.warm_start.WarmStart.from_ids`). The held-out slice is the last 10%:
its rows of users and items the new fit knows, binary, nDCG@10 with training items excluded.
Every fit binary, one thread (cold and warm alike, so the load of a shared machine hits both).

- ALS (default config): cold and warm fits at each budget of 1..``iterations`` sweeps, for
  several seeds (new rows are drawn from the seed), interleaved; nDCG@10 and fit seconds per
  budget (medians over seeds), and the training loss per sweep of one cold and one warm fit (with,
  for each warm sweep, the number of cold sweeps that reach as low a loss).
- Mult-VAE: (a) cold and warm over ``--curve-epochs`` epochs without early stopping, with
  ``validation`` set to the held-out slice so each epoch's nDCG@10 on it is recorded (the curve;
  nothing is chosen on it that the report uses), with the seconds at each epoch; (b) cold and warm
  as the train step fits them (default config, early stopping on a carve of the training data:
  for warm, of the interactions the champion did not train on), for each seed, scored on the slice.

"Equal quality", ALS: the cold model's nDCG@10 at its default budget (median over seeds) less a
tolerance of twice its standard deviation over the seeds (the slice has few users, so nDCG moves
with the seed). The first budget where warm reaches it, and that fit's seconds against the cold
fit's at the default budget, give the time saved; cold's own first budget reaching it is reported
beside. Mult-VAE: (b)'s medians, warm within the same tolerance of cold, and the seconds of both
fits. Writes ``benchmarks/results/warm_start.json``.

    .venv/bin/python benchmarks/warm_start.py                     # ALS and Mult-VAE (~15 min on 2 busy cores)
    .venv/bin/python benchmarks/warm_start.py --families als      # ALS only (~1 min)
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
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = Path(os.environ.get("RECSYS_MOVIELENS_DIR", ROOT.parent / "shared" / "data" / "ml-latest-small"))
CHAMPION_SHARE, TRAIN_SHARE = 0.8, 0.9
K = 10
SEEDS = (42, 43, 44)

log = logging.getLogger("benchmarks.warm_start")


@dataclass(frozen=True)
class TimeSlices:
    """The champion's and the new fit's binary matrices with their raw ids, and the held-out slice."""

    champion: Any  # csr, champion users x items
    champion_users: np.ndarray
    champion_items: np.ndarray
    train: Any  # csr, new users x items
    users: np.ndarray
    items: np.ndarray
    test: Any  # csr over the new fit's users x items

    def counts(self) -> dict[str, int]:
        return {
            "champion_users": len(self.champion_users), "champion_items": len(self.champion_items),
            "champion_interactions": int(self.champion.nnz), "train_users": len(self.users),
            "train_items": len(self.items), "train_interactions": int(self.train.nnz),
            "test_interactions": int(self.test.nnz), "test_users": int((np.diff(self.test.indptr) > 0).sum()),
        }


def time_slices(folder: Path, champion_share: float = CHAMPION_SHARE, train_share: float = TRAIN_SHARE) -> TimeSlices:
    """ratings.csv in time order, cut by row share into champion data, new training data and the held-out rest."""
    import pandas as pd
    import scipy.sparse as sp

    ratings = pd.read_csv(folder / "ratings.csv").sort_values("timestamp", kind="stable")
    users, items = ratings["userId"].astype(str).to_numpy(), ratings["movieId"].astype(str).to_numpy()
    n = len(ratings)

    def binary(rows: slice, user_ids: np.ndarray, item_ids: np.ndarray) -> sp.csr_matrix:
        u, i = pd.Index(user_ids).get_indexer(users[rows]), pd.Index(item_ids).get_indexer(items[rows])
        known = (u >= 0) & (i >= 0)  # the held-out slice keeps what the new fit can score
        matrix = sp.csr_matrix((np.ones(known.sum(), np.float32), (u[known], i[known])),
                               shape=(len(user_ids), len(item_ids)))
        matrix.data[:] = 1.0  # repeated pairs count once
        return matrix

    def encoded(stop: int) -> tuple[np.ndarray, np.ndarray]:
        return np.unique(users[:stop]), np.unique(items[:stop])

    cut_champion, cut_train = int(champion_share * n), int(train_share * n)
    champion_users, champion_items = encoded(cut_champion)
    new_users, new_items = encoded(cut_train)
    return TimeSlices(
        binary(slice(0, cut_champion), champion_users, champion_items), champion_users, champion_items,
        binary(slice(0, cut_train), new_users, new_items), new_users, new_items,
        binary(slice(cut_train, n), new_users, new_items),
    )


def warm_start_for(champion: Any, slices: TimeSlices) -> tuple[Any, dict[str, float]]:
    """The warm start from ``champion`` (saved and loaded back, as the registry hands it over) and its cost."""
    from pipelines.models import load_model
    from pipelines.models.warm_start import WarmStart

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_model(champion.save(Path(tmp) / "champion"))
    loaded_at = time.perf_counter()
    warm = WarmStart.from_ids(loaded, slices.champion_users, slices.champion_items, slices.users, slices.items,
                              source="champion", previous_seen=slices.champion)
    done = time.perf_counter()
    return warm, {"save_and_load_seconds": loaded_at - started, "map_ids_seconds": done - loaded_at}


def ndcg(model: Any, slices: TimeSlices) -> float:
    from pipelines.evaluation.evaluate import evaluate_model

    return float(evaluate_model(model, slices.train, slices.test, k=K)[f"ndcg@{K}"])


def first_reaching(values: Sequence[float], target: float) -> int | None:
    """1-based index of the first value >= target, or None."""
    return next((index + 1 for index, value in enumerate(values) if value >= target), None)


def tolerance(values: Sequence[float]) -> float:
    return 2 * statistics.stdev(values) if len(values) > 1 else 0.0


# -- ALS ----------------------------------------------------------------------------------------------
def bench_als(slices: TimeSlices, seeds: Sequence[int], threads: int) -> dict[str, Any]:
    from pipelines.models import create_model

    base = {"num_threads": threads}
    champion = create_model("als", base).fit(slices.champion)
    warm, prepare = warm_start_for(champion, slices)
    budget = champion.config.iterations
    runs: dict[str, dict[int, list[tuple[float, float]]]] = {"cold": {}, "warm": {}}
    for seed in seeds:
        for iterations in range(1, budget + 1):
            for kind, start in (("cold", None), ("warm", warm)):  # interleaved: load changes hit both
                model = create_model("als", {**base, "seed": seed, "iterations": iterations})
                model.fit(slices.train, warm_start=start)
                runs[kind].setdefault(iterations, []).append((ndcg(model, slices), model.fit_seconds_))
        log.info("als seed %d done", seed)
    curve = {
        kind: {
            "ndcg": [statistics.median(v for v, _ in by_budget[b]) for b in range(1, budget + 1)],
            "fit_seconds": [statistics.median(s for _, s in by_budget[b]) for b in range(1, budget + 1)],
            "ndcg_by_seed": {str(seed): [by_budget[b][i][0] for b in range(1, budget + 1)] for i, seed in enumerate(seeds)},
        }
        for kind, by_budget in runs.items()
    }
    cold_final = [value for value, _ in runs["cold"][budget]]
    losses = {kind: create_model("als", {**base, "seed": seeds[0]}).fit(slices.train, warm_start=start).training_loss_
              for kind, start in (("cold", None), ("warm", warm))}
    return {
        "config": champion.config.hyperparameters(),
        "champion_fit_seconds": champion.fit_seconds_,
        "warm_start": {**warm.summary(), **prepare},
        "budget": budget,
        "seeds": list(seeds),
        "curve": curve,
        # For each warm sweep, the cold sweeps it takes to get the loss as low (None: not within the budget).
        "training_loss": {**losses, "cold_sweeps_matching_warm_sweep": [
            first_reaching([-v for v in losses["cold"]], -value) for value in losses["warm"]]},
        **equal_quality(curve, statistics.median(cold_final), tolerance(cold_final), budget),
    }


def equal_quality(curve: dict[str, dict[str, list[float]]], target: float, tol: float, budget: int,
                  cold_seconds: float | None = None) -> dict[str, Any]:
    """Where warm (and cold) first reach ``target - tol``, and the seconds saved against the cold fit
    (``cold_seconds``; default: the cold curve's seconds at ``budget``)."""
    reach = target - tol
    warm_at = first_reaching(curve["warm"]["ndcg"], reach)
    cold_at = first_reaching(curve["cold"]["ndcg"], reach)
    if cold_seconds is None:
        cold_seconds = curve["cold"]["fit_seconds"][budget - 1]
    warm_seconds = None if warm_at is None else curve["warm"]["fit_seconds"][warm_at - 1]
    cold_own = None if cold_at is None else curve["cold"]["fit_seconds"][cold_at - 1]
    return {
        "equal_quality": {
            "cold_ndcg_at_budget": target,
            "tolerance": tol,
            "target": reach,
            "warm_iterations": warm_at,
            "warm_seconds": warm_seconds,
            "cold_iterations": cold_at,
            "cold_seconds_to_target": cold_own,
            "cold_seconds": cold_seconds,
            "time_saved_ratio": None if warm_seconds is None else 1 - warm_seconds / cold_seconds,
            "time_saved_ratio_vs_cold_to_target": None if warm_seconds is None or not cold_own else 1 - warm_seconds / cold_own,
        },
        "equal_iterations": {
            str(b): {"cold": curve["cold"]["ndcg"][b - 1], "warm": curve["warm"]["ndcg"][b - 1]}
            for b in sorted({1, 2, 3, 5, budget} & set(range(1, budget + 1)))
        },
    }


# -- deep models --------------------------------------------------------------------------------------
def bench_deep(name: str, slices: TimeSlices, threads: int, seeds: Sequence[int], curve_epochs: int) -> dict[str, Any]:
    """The curve at equal epochs (first seed), then cold and warm as the train step fits them, per seed."""
    from pipelines.models import create_model

    base = {"num_threads": threads, "seed": seeds[0]}
    champion = create_model(name, base).fit(slices.champion)
    warm, prepare = warm_start_for(champion, slices)
    curve: dict[str, dict[str, list[float]]] = {}
    for kind, start in (("cold", None), ("warm", warm)):
        stamps: list[float] = []
        began = time.perf_counter()
        model = create_model(name, {**base, "epochs": curve_epochs, "patience": curve_epochs})  # every epoch runs
        model.fit(slices.train, validation=slices.test, warm_start=start,
                  callback=lambda epoch, loss, metrics=None: stamps.append(time.perf_counter() - began))
        curve[kind] = {"ndcg": list(model.validation_ndcg_), "fit_seconds": stamps, "loss": list(model.training_loss_)}
        log.info("%s %s curve: best epoch %d", name, kind, model.best_epoch_)
    runs: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": []}
    for seed in seeds:
        for kind, start in (("cold", None), ("warm", warm)):
            model = create_model(name, {**base, "seed": seed}).fit(slices.train, warm_start=start)
            runs[kind].append({"seed": seed, "ndcg": ndcg(model, slices), "fit_seconds": model.fit_seconds_,
                               "epochs_run": len(model.training_loss_), "best_epoch": model.best_epoch_ + 1})
            log.info("%s %s as trained: %s", name, kind, runs[kind][-1])
    median = {kind: {key: statistics.median(run[key] for run in rows) for key in ("ndcg", "fit_seconds", "epochs_run")}
              for kind, rows in runs.items()}
    tol = tolerance([run["ndcg"] for run in runs["cold"]])
    windows = [(1, 5), (6, 20), (21, curve_epochs)]
    return {
        "config": champion.config.hyperparameters(),
        "champion_fit_seconds": champion.fit_seconds_,
        "champion_epochs_run": len(champion.training_loss_),
        "warm_start": {**warm.summary(), **prepare},
        "curve_epochs": curve_epochs,
        "curve": curve,
        "equal_iterations": {
            **{str(e): {kind: curve[kind]["ndcg"][e - 1] for kind in curve} for e in (1, 2, 3, 5, 10, 20, curve_epochs)},
            # The slice has few users: single epochs move a lot; means over windows of epochs move less.
            "mean_over_epochs": {f"{a}-{b}": {kind: statistics.fmean(curve[kind]["ndcg"][a - 1 : b]) for kind in curve}
                                 for a, b in windows},
        },
        "as_trained": runs,
        "equal_quality": {
            "protocol": "default config, early stopping on a carve of the training data (for warm: of the "
            "interactions the champion did not train on); medians over seeds; tolerance = 2 x the standard "
            "deviation of cold nDCG@10 over seeds",
            "cold_ndcg": median["cold"]["ndcg"], "warm_ndcg": median["warm"]["ndcg"], "tolerance": tol,
            "warm_within_tolerance": median["warm"]["ndcg"] >= median["cold"]["ndcg"] - tol,
            "cold_seconds": median["cold"]["fit_seconds"], "warm_seconds": median["warm"]["fit_seconds"],
            "cold_epochs_run": median["cold"]["epochs_run"], "warm_epochs_run": median["warm"]["epochs_run"],
            "time_saved_ratio": 1 - median["warm"]["fit_seconds"] / median["cold"]["fit_seconds"],
        },
    }


def _versions() -> dict[str, str]:
    found = {}
    for package in ("numpy", "scipy", "torch"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ml-latest-small folder")
    parser.add_argument("--families", nargs="+", default=["als", "multvae"], choices=["als", "multvae", "ncf"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                        help="seeds of the fits compared (the first also for the champion and the deep curve)")
    parser.add_argument("--curve-epochs", type=int, default=40, help="epochs of the deep models' equal-epochs curve")
    parser.add_argument("--threads", type=int, default=1, help="threads of every fit")
    parser.add_argument("--output", type=Path, default=RESULTS / "warm_start.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    slices = time_slices(args.data)
    load_before = list(os.getloadavg())
    families: dict[str, Any] = {}
    for family in args.families:
        started = time.perf_counter()
        families[family] = (bench_als(slices, args.seeds, args.threads) if family == "als"
                            else bench_deep(family, slices, args.threads, args.seeds, args.curve_epochs))
        families[family]["benchmark_seconds"] = time.perf_counter() - started
        log.info("%s: %s", family, json.dumps(families[family]["equal_quality"]))
    report = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": {"name": "MovieLens ml-latest-small", "path": str(args.data), "counts": slices.counts()},
        "protocol": {
            "description": __doc__.split("\n\n", 1)[1].split("\n\n    ")[0],
            "champion_share": CHAMPION_SHARE, "train_share": TRAIN_SHARE, "k": K, "threads": args.threads,
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
                    "versions": _versions()},
        "families": families,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    log.info("wrote %s", args.output)
    return report


if __name__ == "__main__":
    main()
