"""Time our ALS (pipelines.models.als) against implicit's compiled CPU conjugate-gradient ALS.

Both get the same confidence matrix (``1 + alpha * rating``), factors, iterations,
regularization, CG steps, seed (implicit and we draw the same initial factors from it) and
thread count, with BLAS held to one thread; training loss is off in the timed fits, and one
more fit of each with it on records the loss per iteration. The default alpha 0.5 exercises
the general solver; ``--alpha 0`` gives binary confidences, where our solver skips the sparse
term of the CG products (it is zero) while implicit still computes it. Each fit is repeated
(ours and implicit's interleaved, so load from other processes hits both alike), the best time
kept and the load average after each fit recorded. nDCG@10 of both models is measured on a
held-out split with training items excluded, users scored in blocks.

Where OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set (see the machine notes), unset them for the
benchmark command alone (``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ...``); the BLAS kernel
that ran is recorded under ``machine.blas``.

    .venv/bin/python benchmarks/als_vs_implicit.py                      # planted 100k x 20k, 5M entries
    .venv/bin/python benchmarks/als_vs_implicit.py --users 20000 --items 5000 --nnz 1000000 \
        --output benchmarks/results/als_vs_implicit_1m.json
    .venv/bin/python benchmarks/als_vs_implicit.py --users 2000 --items 1000 --nnz 50000 --repeats 1
    .venv/bin/python benchmarks/als_vs_implicit.py --alpha 0 --output benchmarks/results/als_vs_implicit_binary.json
    .venv/bin/python benchmarks/als_vs_implicit.py --movielens ../shared/data/ml-latest-small/ratings.csv --alpha 0

Writes ``benchmarks/results/als_vs_implicit.json`` (``als_vs_implicit_movielens.json`` with
``--movielens``) unless ``--output`` says otherwise. Needs the ``bench`` extra (implicit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.compute.topk import block_rows, top_k  # noqa: E402
from pipelines.evaluation.metrics import ranking_metrics  # noqa: E402
from pipelines.models.als import AlsConfig, AlsRecommender  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


# -- data ----------------------------------------------------------------------------------------
def planted_ratings(n_users: int, n_items: int, nnz: int, rank: int = 16, seed: int = 0) -> sp.csr_matrix:
    """A users x items matrix of 1..5 ratings sampled from planted tastes plus Zipf popularity.

    Each user draws about ``nnz / n_users`` items (log-normal spread) without replacement with
    probability proportional to ``popularity * exp(taste . item)`` (Gumbel top-k, in chunks of
    users), and rates them by affinity plus noise.
    """
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, rank)) / np.sqrt(rank)
    items = rng.normal(size=(n_items, rank))
    log_popularity = -0.8 * np.log(rng.permutation(n_items) + 1.0)
    per_user = rng.lognormal(mean=0.0, sigma=0.7, size=n_users)
    per_user = np.clip(np.round(per_user * nnz / per_user.sum()), 1, n_items).astype(np.int64)
    rows, cols, vals = [], [], []
    chunk = max(1, 4_000_000 // n_items)
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        affinity = 2.0 * users[start:stop] @ items.T
        keys = affinity + log_popularity + rng.gumbel(size=affinity.shape)
        k_max = int(per_user[start:stop].max())
        top = np.argpartition(-keys, k_max - 1, axis=1)[:, :k_max]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1), axis=1)
        take = np.arange(k_max)[None, :] < per_user[start:stop, None]
        user_rows = np.broadcast_to(np.arange(start, stop)[:, None], top.shape)[take]
        chosen = top[take]
        score = affinity[user_rows - start, chosen] + rng.normal(scale=0.5, size=len(chosen))
        rows.append(user_rows)
        cols.append(chosen)
        vals.append(np.clip(np.round(3.0 + score), 1, 5))
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_users, n_items)
    )
    matrix.sum_duplicates()
    return matrix


def holdout_split(ratings: sp.csr_matrix, test_fraction: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Per user, a seeded random ``test_fraction`` of the entries (rounded) goes to test."""
    coo = ratings.tocoo()
    rand = np.random.default_rng(seed).random(coo.nnz)
    order = np.lexsort((rand, coo.row))
    row_sorted = coo.row[order]
    starts = np.searchsorted(row_sorted, row_sorted, side="left")
    counts = np.bincount(coo.row, minlength=ratings.shape[0])[row_sorted]
    rank = np.arange(coo.nnz) - starts
    is_train = np.empty(coo.nnz, dtype=bool)
    is_train[order] = rank < np.round((1.0 - test_fraction) * counts)
    return _subset(coo, is_train), _subset(coo, ~is_train)


def movielens_split(path: Path, seed: int = 42) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """ml-latest-small ratings split 75/25 per user like Microsoft Recommenders' python_stratified_split."""
    data = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=(0, 1, 2))
    user_ids, users = np.unique(data[:, 0], return_inverse=True)
    item_ids, items = np.unique(data[:, 1], return_inverse=True)
    rand = np.random.RandomState(seed).rand(len(data))  # == np.random.seed(seed); np.random.rand(n)
    order = np.lexsort((rand, users))
    starts = np.searchsorted(users[order], users[order], side="left")
    rank = np.arange(len(data)) - starts + 1
    counts = np.bincount(users)[users[order]]
    is_train = np.empty(len(data), dtype=bool)
    is_train[order] = rank <= np.round(0.75 * counts)  # pandas rounds half to even, as numpy
    coo = sp.coo_matrix((data[:, 2], (users, items)), shape=(len(user_ids), len(item_ids)))
    return _subset(coo, is_train), _subset(coo, ~is_train)


def _subset(coo: sp.coo_matrix, keep: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=coo.shape)


# -- models --------------------------------------------------------------------------------------
def fit_ours(confidence: sp.csr_matrix, config: AlsConfig) -> dict:
    """Fit our ALS; seconds in total and per iteration (callback timestamps), losses, factors."""
    stamps: list[float] = []
    start = time.perf_counter()
    model = AlsRecommender(config).fit(confidence, callback=lambda iteration, loss: stamps.append(time.perf_counter()))
    elapsed = time.perf_counter() - start
    return {
        "seconds": elapsed,
        "per_iteration": list(np.diff([start, *stamps])),  # the first includes the setup
        "loss": list(model.training_loss_),
        "factors": (model.user_factors_, model.item_factors_),
    }


def fit_implicit(confidence: sp.csr_matrix, config: AlsConfig) -> dict:
    """Fit implicit's CPU CG ALS with the same settings; its callback gives per-iteration time and loss."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    per_iteration: list[float] = []
    losses: list[float] = []

    def record(iteration: int, seconds: float, loss: float | None) -> None:
        per_iteration.append(seconds)
        if loss is not None:
            losses.append(float(loss))

    with threadpool_limits(limits=1, user_api="blas"):  # also silences implicit's BLAS warning
        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            iterations=config.iterations,
            use_cg=True,
            use_native=True,
            calculate_training_loss=config.calculate_training_loss,
            num_threads=config.num_threads,
            random_state=config.seed,
        )
        model.cg_steps = config.cg_steps
        start = time.perf_counter()
        model.fit(confidence, show_progress=False, callback=record)
        elapsed = time.perf_counter() - start
    return {
        "seconds": elapsed,
        "per_iteration": per_iteration,
        "loss": losses,
        "factors": (model.user_factors, model.item_factors),
    }


def implicit_loss(confidence: sp.csr_matrix, factors: tuple[np.ndarray, np.ndarray], config: AlsConfig) -> float:
    """implicit's own ``calculate_loss`` at given factors: one yardstick for both models' results."""
    from implicit.cpu import _als

    user_factors, item_factors = factors
    return float(_als.calculate_loss(confidence, user_factors, item_factors, config.regularization,
                                     num_threads=config.num_threads))


def solver_in_use() -> str:
    """Which CPU solver our ALS runs: the numba kernel or the NumPy fallback."""
    from pipelines.models.als_solver import compiled_cg_kernel

    return "numba kernel (pipelines.models.als_kernels)" if compiled_cg_kernel() is not None else "numpy"


def ndcg_at_10(user_factors: np.ndarray, item_factors: np.ndarray, train: sp.csr_matrix, test: sp.csr_matrix) -> float:
    """nDCG@10 with training items excluded, users scored in blocks through the product's top-K."""
    users = np.flatnonzero(np.diff(test.indptr))
    step = block_rows(item_factors.shape[0])
    top = np.empty((len(users), 10), dtype=np.int64)
    for start in range(0, len(users), step):
        block = users[start : start + step]
        top[start : start + len(block)] = top_k(user_factors[block] @ item_factors.T, 10, exclude=train[block])[0]
    return ranking_metrics(top, test[users], 10, train.shape[1])["ndcg@10"]


# -- main ----------------------------------------------------------------------------------------
def machine_info(load_at_start: tuple[float, ...] | None) -> dict:
    from threadpoolctl import threadpool_info

    import implicit
    import scipy

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "implicit": implicit.__version__,
        "blas": [{k: lib.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                 for lib in threadpool_info()],
        "openblas_env": {name: os.environ.get(name) for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--nnz", type=int, default=5_000_000, help="interactions before the held-out split")
    parser.add_argument("--movielens", type=Path, help="ratings.csv of ml-latest-small instead of planted data")
    parser.add_argument("--alpha", type=float, default=0.5, help="confidence = 1 + alpha * rating (0: binary)")
    parser.add_argument("--factors", type=int, default=AlsConfig().factors)
    parser.add_argument("--iterations", type=int, default=AlsConfig().iterations)
    # A fixed penalty: this compares the solvers at one setting (the platform's default chooses
    # it on validation first; benchmarks/pipeline.py times that whole path).
    parser.add_argument("--regularization", type=float, default=10.0)
    parser.add_argument("--cg-steps", type=int, default=AlsConfig().cg_steps)
    parser.add_argument("--threads", type=int, default=2, help="threads for both libraries")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per library; the best time is kept")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg() if hasattr(os, "getloadavg") else None

    started = time.perf_counter()
    if args.movielens:
        train, test = movielens_split(args.movielens, seed=args.seed)
        dataset = {"name": "ml-latest-small", "path": str(args.movielens), "split": "per-user random 75/25"}
        output = args.output or RESULTS / "als_vs_implicit_movielens.json"
    else:
        ratings = planted_ratings(args.users, args.items, args.nnz, seed=args.seed)
        train, test = holdout_split(ratings, 0.2, seed=args.seed)
        del ratings
        dataset = {"name": "planted", "rank": 16, "split": "per-user random 80/20"}
        output = args.output or RESULTS / "als_vs_implicit.json"
    print(f"data: {train.shape[0]} x {train.shape[1]}, {train.nnz} training entries "
          f"({time.perf_counter() - started:.1f}s)", flush=True)
    confidence = train.astype(np.float32)
    confidence.data = 1.0 + args.alpha * confidence.data
    timed = AlsConfig(
        factors=args.factors, iterations=args.iterations, regularization=args.regularization,
        cg_steps=args.cg_steps, seed=args.seed, num_threads=args.threads, calculate_training_loss=False,
    )
    with_loss = timed.model_copy(update={"calculate_training_loss": True})
    fits = {"ours": fit_ours, "implicit": fit_implicit}

    # Timed fits, loss off in both, interleaved so that load from other processes hits both alike.
    # Our first fit in a process also loads the compiled kernel (numba): kept, reported apart.
    runs: dict[str, list[dict]] = {"ours": [], "implicit": []}
    loads: list[tuple[float, ...]] = []
    for _ in range(args.repeats):
        for name, fit in fits.items():
            run = fit(confidence, timed)
            runs[name].append(run)
            loads.append(os.getloadavg() if hasattr(os, "getloadavg") else ())
            print(f"{name:9s} {run['seconds']:8.3f}s  load {loads[-1][0] if loads[-1] else float('nan'):.1f}", flush=True)

    # One more fit each with the training loss on (not timed for the ratio): per-iteration losses.
    losses = {name: fit(confidence, with_loss) for name, fit in fits.items()}
    best = {name: min(runs[name], key=lambda run: run["seconds"]) for name in fits}
    factors = {name: best[name]["factors"] for name in fits}
    ndcg = {name: round(ndcg_at_10(*factors[name], train, test), 5) for name in fits}
    # implicit's calculate_loss (float32 confidences; same definition for positive values) at both
    # timed fits' final factors: a check that both solvers reach the same optimum, loss code aside.
    final_loss = {name: implicit_loss(confidence, factors[name], timed) for name in fits}

    def rounded(values: list[float], digits: int = 4) -> list[float]:
        return [round(float(v), digits) for v in values]

    weighting = "binary (1 per interaction)" if args.alpha == 0 else f"1 + {args.alpha} * rating"
    per_iteration = {name: float(np.median(best[name]["per_iteration"][1:] or best[name]["per_iteration"]))
                     for name in fits}
    loss_gap = max(abs(a - b) / abs(b) for a, b in zip(losses["ours"]["loss"], losses["implicit"]["loss"]))
    result = {
        "benchmark": "als_vs_implicit",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/als_vs_implicit.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "dataset": {**dataset, "users": train.shape[0], "items": train.shape[1],
                    "train_nnz": int(train.nnz), "test_nnz": int(test.nnz)},
        "params": {**timed.model_dump(mode="json"), "confidence": weighting, "threads_both": args.threads,
                   "blas_threads": 1, "repeats": args.repeats,
                   "training_loss": "off in the timed fits; one extra fit each with it on"},
        "our_cpu_solver": solver_in_use(),
        "seconds": {
            "ours_best": round(best["ours"]["seconds"], 4),
            "implicit_best": round(best["implicit"]["seconds"], 4),
            "all": {name: rounded([run["seconds"] for run in runs[name]]) for name in fits},
            "per_iteration_best_fit": {name: rounded(best[name]["per_iteration"]) for name in fits},
            "per_iteration_median": {name: round(per_iteration[name], 4) for name in fits},
        },
        "ratio_ours_over_implicit": round(best["ours"]["seconds"] / best["implicit"]["seconds"], 3),
        "ratio_per_iteration": round(per_iteration["ours"] / per_iteration["implicit"], 3),
        "training_loss": {
            "per_iteration": {name: rounded(losses[name]["loss"], 7) for name in fits},
            "max_relative_gap_per_iteration": round(loss_gap, 6),
            "final_by_implicit_calculate_loss": {name: round(final_loss[name], 7) for name in fits},
        },
        "ndcg@10": {**ndcg, "relative_gap": round(abs(ndcg["ours"] - ndcg["implicit"]) / ndcg["implicit"], 5)},
        "load_average_after_each_timed_fit": [rounded(load, 2) for load in loads],
        "machine": machine_info(load_at_start),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    summary = ("seconds", "ratio_ours_over_implicit", "ratio_per_iteration", "ndcg@10")
    print(json.dumps({k: result[k] for k in summary} | {"loss_gap": loss_gap}, indent=2))
    print(f"wrote {output}")
    return result


if __name__ == "__main__":
    main()
