"""The whole pipeline against the script it replaces, on the same Parquet file.

1. Writes a Parquet file of N interactions (user_id, item_id, rating, timestamp): users in taste
   clusters over a Zipf-skewed catalogue, so factorization beats popularity; about 2% repeated
   (user, item) events for the dedup step.
2. Runs ``recsys train --source parquet --path FILE --no-track`` on it as a separate process with
   every default, and reads the step timings and nDCG@10 of ALS and popularity from its JSON.
3. Runs, in another process, a hand-written reference doing the same work with pandas, SciPy and
   implicit: read, dedup (latest event per pair), the same per-user 25% split, binary CSR,
   implicit's ALS with our default hyperparameters, implicit's threaded top-10 for ALS and for
   popularity (a 1-factor model), nDCG@10.

Both wall times (process start to exit) and CPU times (user + system of each process, from
``wait4``: steadier than wall time on a shared machine), each step's seconds, peak RSS of each
process, both nDCGs, the ratios (whole run, data path, evaluation over fit) and the load
average go to ``benchmarks/results/pipeline.json`` (one entry per size, merged with earlier
sizes). Needs the ``bench`` extra (implicit).

    .venv/bin/python benchmarks/pipeline.py --size 1M
    .venv/bin/python benchmarks/pipeline.py --size 5M          # 100k users x 20k items
    .venv/bin/python benchmarks/pipeline.py --size 20M
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pipeline.json"
SIZES = {"1M": 1_000_000, "5M": 5_000_000, "20M": 20_000_000}
K = 10


# -- data ----------------------------------------------------------------------------------------
def write_interactions(path: Path, n_rows: int, n_items: int = 20_000, per_user: int = 50,
                       n_clusters: int = 50, taste_share: float = 0.7, seed: int = 0) -> dict:
    """Write ``n_rows`` interactions to ``path``; returns what was generated.

    Item popularity follows a Zipf law over a random item order. Each cluster of users likes
    300 items of the catalogue (a mild skew among them); an event comes from the user's cluster with probability
    ``taste_share`` (rated higher), otherwise from global popularity. Sampling is inverse-CDF
    over all events at once.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_users = max(1, n_rows // per_user)
    popularity = 1.0 / (rng.permutation(n_items) + 10.0) ** 0.9
    popularity /= popularity.sum()
    liked = np.stack([rng.choice(n_items, size=300, replace=False) for _ in range(n_clusters)])
    liked_weight = 1.0 / (np.arange(300) + 5.0) ** 0.5  # a mild skew inside each cluster's taste
    liked_weight = np.broadcast_to(liked_weight, liked.shape)
    liked_cdf = np.cumsum(liked_weight, axis=1) / liked_weight.sum(axis=1, keepdims=True)
    counts = rng.lognormal(0.0, 0.6, size=n_users)
    counts = np.maximum(1, np.round(counts * n_rows / counts.sum())).astype(np.int64)
    counts[-1] += n_rows - counts.sum()  # exact total (the last user absorbs rounding)
    counts = np.maximum(counts, 1)
    users = np.repeat(np.arange(n_users, dtype=np.int64), counts)[:n_rows]
    cluster = rng.integers(0, n_clusters, size=n_users)[users]
    from_taste = rng.random(n_rows) < taste_share
    draw = rng.random(n_rows)
    # Cluster c's CDF shifted by c makes all clusters one sorted array: one searchsorted.
    shifted = (liked_cdf + np.arange(n_clusters)[:, None]).ravel()
    taste_pos = np.minimum(np.searchsorted(shifted, cluster + draw), shifted.size - 1)
    global_pick = np.minimum(np.searchsorted(np.cumsum(popularity), draw), n_items - 1)
    items = np.where(from_taste, liked.ravel()[taste_pos], global_pick)
    rating = np.clip(np.round(np.where(from_taste, 4.0, 2.5) + rng.normal(0, 1.0, n_rows)), 1, 5)
    timestamp = 1_600_000_000 + rng.integers(0, 3 * 365 * 86_400, size=n_rows)
    table = pa.table({"user_id": users + 1, "item_id": items.astype(np.int64) + 1,
                      "rating": rating.astype(np.float32), "timestamp": timestamp.astype(np.int64)})
    pq.write_table(table, path, compression="snappy", row_group_size=1_000_000)
    return {"rows": int(n_rows), "users": int(n_users), "items": int(n_items), "clusters": n_clusters,
            "taste_share": taste_share, "seed": seed}


# -- the hand-written reference (runs in its own process) ----------------------------------------
def reference(path: Path, regularization: float, seed: int = 42) -> dict:
    """The script a user would write instead of the platform; returns its timings and nDCGs.

    ``regularization``: the value the platform's run chose on validation (its default), so both
    fit the same model; the script does not pay for choosing it."""
    import pandas as pd
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.topk import topk
    from threadpoolctl import threadpool_limits

    sys.path.insert(0, str(ROOT))
    from pipelines.models.als import AlsConfig

    defaults = AlsConfig()
    steps: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        steps[name] = round(now - clock, 3)
        clock = now

    frame = pd.read_parquet(path, columns=["user_id", "item_id", "rating", "timestamp"])
    lap("read")
    frame = frame.sort_values("timestamp", kind="stable").drop_duplicates(["user_id", "item_id"], keep="last")
    lap("dedup")
    # The platform's split exactly (Recommenders' python_stratified_split): ids numbered in
    # sorted-text order, rows in (user, item) order, one RandomState draw per row, each user's
    # first round(0.75 n) rows by draw to train. Same split, so the nDCGs compare like for like.
    users, user_ids = pd.factorize(frame["user_id"].astype(str), sort=True)
    items, item_ids = pd.factorize(frame["item_id"].astype(str), sort=True)
    by_pair = np.argsort(users.astype(np.int64) * len(item_ids) + items, kind="stable")
    users, items = users[by_pair], items[by_pair]
    draws = np.random.RandomState(seed).rand(len(users))
    order = np.lexsort((draws, users))
    sorted_users = users[order]
    starts = np.searchsorted(sorted_users, sorted_users, side="left")
    counts = np.bincount(users)[sorted_users]
    rank = np.arange(len(order)) - starts + 1
    is_test = np.empty(len(order), dtype=bool)
    is_test[order] = rank > np.maximum(1, np.round(0.75 * counts))
    lap("split")
    shape = (len(user_ids), len(item_ids))

    def binary(mask: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((np.ones(int(mask.sum()), dtype=np.float32), (users[mask], items[mask])), shape=shape)

    train, test = binary(~is_test), binary(is_test)
    lap("csr")
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(factors=defaults.factors, regularization=regularization,
                                        iterations=defaults.iterations, use_cg=True, random_state=seed,
                                        calculate_training_loss=False)
        model.cg_steps = defaults.cg_steps
        model.fit(train, show_progress=False)
    lap("fit_als")
    evaluated = np.flatnonzero(np.diff(test.indptr))
    seen = train[evaluated]
    als_top, _ = topk(model.item_factors, model.user_factors[evaluated], K, filter_query_items=seen, num_threads=0)
    lap("topk_als")
    popularity = np.asarray((train > 0).sum(axis=0), dtype=np.float32).reshape(-1, 1)
    pop_top, _ = topk(popularity, np.ones((len(evaluated), 1), dtype=np.float32), K, filter_query_items=seen,
                      num_threads=0)
    lap("topk_popularity")
    relevant = test[evaluated]
    result = {"steps": steps, "ndcg@10": {"als": ndcg(als_top, relevant), "popularity": ndcg(pop_top, relevant)}}
    lap("ndcg")
    result["n_train"], result["n_test"], result["users_evaluated"] = int(train.nnz), int(test.nnz), len(evaluated)
    return result


def ndcg(top: np.ndarray, relevant) -> float:
    """Mean nDCG@k of ranked lists ``top`` (-1 or negative: empty) against CSR rows ``relevant``."""
    n_items = relevant.shape[1]
    rows = np.repeat(np.arange(relevant.shape[0]), np.diff(relevant.indptr))
    keys = rows * n_items + relevant.indices
    query = np.arange(len(top))[:, None] * n_items + np.where(top >= 0, top, 0)
    hits = np.isin(query, keys) & (top >= 0)
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    ideal = np.cumsum(discounts)[np.minimum(np.diff(relevant.indptr), top.shape[1]) - 1]
    return round(float(np.mean((hits @ discounts) / ideal)), 5)


# -- running and measuring -----------------------------------------------------------------------
def measured(command: list[str], env: dict, stdout_path: Path) -> tuple[float, float, float, int]:
    """Run ``command``; returns (wall seconds, CPU seconds (user + system, all its threads),
    peak RSS MiB of that process, exit code)."""
    started = time.perf_counter()
    with open(stdout_path, "w") as out, open(stdout_path.with_suffix(".err"), "w") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return round(wall, 2), round(usage.ru_utime + usage.ru_stime, 2), round(usage.ru_maxrss / 1024, 1), proc.returncode


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=SIZES, default="1M", help="interactions in the file")
    parser.add_argument("--rows", type=int, help="exact interactions (overrides --size; for quick runs)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--reference-only", type=Path, help=argparse.SUPPRESS)  # the reference's own process
    parser.add_argument("--regularization", type=float, help=argparse.SUPPRESS)  # what our run chose
    args = parser.parse_args(argv)
    if args.reference_only:
        print(json.dumps(reference(args.reference_only, args.regularization)))
        return {}

    label = args.size if args.rows is None else f"{args.rows}"
    n_rows = args.rows or SIZES[args.size]
    load_start = os.getloadavg()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="recsys-bench-") as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "interactions.parquet"
        started = time.perf_counter()
        dataset = write_interactions(data, n_rows)
        dataset["write_seconds"] = round(time.perf_counter() - started, 2)
        dataset["bytes"] = data.stat().st_size

        ours_env = {**env, "RECSYS_HOME": str(tmp_path / "home")}
        ours_wall, ours_cpu, ours_rss, code = measured(
            [sys.executable, "-m", "pipelines.cli", "train", "--source", "parquet", "--path", str(data), "--no-track"],
            ours_env, tmp_path / "ours.json")
        if code != 0:
            raise SystemExit(f"recsys train failed:\n{(tmp_path / 'ours.err').read_text()[-3000:]}")
        ours = json.loads((tmp_path / "ours.json").read_text())
        # The reference fits the regularization our run chose on validation (our default).
        chosen = float(ours["models"]["als"]["fitted"]["regularization"])
        ref_wall, ref_cpu, ref_rss, code = measured(
            [sys.executable, __file__, "--reference-only", str(data), "--regularization", str(chosen)], env,
            tmp_path / "reference.json")
        if code != 0:
            raise SystemExit(f"reference failed:\n{(tmp_path / 'reference.err').read_text()[-3000:]}")
        ref = json.loads((tmp_path / "reference.json").read_text())

    # recsys resets the kernel's peak-RSS mark per step (pipelines.timing), so the process's own
    # ru_maxrss holds only the last step's peak: the largest step peak is the process's.
    ours_rss = max([ours_rss, *(step["peak_rss_mib"] for step in ours["timings"].values())])
    ours_ndcg = {name: round(m["metrics"]["ndcg@10"], 5) for name, m in ours["models"].items()}
    steps = ours["timings"]
    ours_data = steps["clean"]["seconds"] + steps["features"]["seconds"]
    ref_data = sum(ref["steps"][name] for name in ("read", "dedup", "split", "csr"))
    entry = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset,
        "ours": {"command": "recsys train --source parquet --path FILE --no-track", "wall_seconds": ours_wall,
                 "cpu_seconds": ours_cpu, "peak_rss_mib": ours_rss, "steps": steps, "ndcg@10": ours_ndcg},
        "als_regularization_chosen": round(chosen, 4),
        "reference": {"wall_seconds": ref_wall, "cpu_seconds": ref_cpu, "peak_rss_mib": ref_rss,
                      "steps": ref["steps"], "ndcg@10": ref["ndcg@10"], "n_train": ref["n_train"],
                      "n_test": ref["n_test"]},
        "ratio_wall_ours_over_reference": round(ours_wall / ref_wall, 2),
        "ratio_cpu_ours_over_reference": round(ours_cpu / ref_cpu, 2),
        "evaluate_over_fit": {
            "als": round(steps["evaluate:als"]["seconds"] / steps["fit:als"]["seconds"], 2),
            "als_and_popularity_over_als_fit": round(
                (steps["evaluate:als"]["seconds"] + steps["evaluate:popularity"]["seconds"])
                / steps["fit:als"]["seconds"], 2),
        },
        "ratio_data_path": {"ours_clean_plus_features": round(ours_data, 2),
                            "reference_read_dedup_split_csr": round(ref_data, 2),
                            "ratio": round(ours_data / ref_data, 2)},
        "ndcg_als_relative_difference": round(ours_ndcg["als"] / ref["ndcg@10"]["als"] - 1.0, 4),
        "ndcg_popularity_relative_difference": round(ours_ndcg["popularity"] / ref["ndcg@10"]["popularity"] - 1.0, 4),
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "load_average_at_start": [round(x, 2) for x in load_start],
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
    }
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results[label] = entry
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(entry, indent=2))
    print(f"wrote {args.output}", file=sys.stderr)
    return entry


if __name__ == "__main__":
    main()
