"""How fast the synthetic source writes, against NumPy writing the same number of random rows.

Ours: ``run_ingest`` of the synthetic source (``pipelines.data.synthetic`` through Dask's
``to_parquet``, one file per partition of about a million rows, plus the snapshot's checksum,
item metadata and manifest), with 40 interactions per user over 20k items. Reference, in the
same process: NumPy draws the same number of uniformly random rows in the same schema (string
ids, float ratings, int timestamps, source row) and pyarrow writes them with the same codec and
the same rows per file: the floor for writing these rows at all, with no structure in them.

Both are timed wall-clock and in CPU seconds (this process's, all threads): on a shared machine
CPU seconds move less than wall time. Imports are done before either clock starts. Results go to
``benchmarks/results/synthetic.json`` (one entry per row count).

    .venv/bin/python benchmarks/synthetic.py                  # 5M rows
    .venv/bin/python benchmarks/synthetic.py --rows 20000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "synthetic.json"
N_ITEMS = 20_000
PER_USER = 40


def timed(work) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) spent in ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return round(time.perf_counter() - wall, 3), round(time.process_time() - cpu, 3)


def numpy_reference(out_dir: Path, n_rows: int, n_users: int, rows_per_file: int, seed: int = 0) -> None:
    """Uniformly random rows in the synthetic source's schema, written as the source writes them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True)
    item_names = pc.binary_join_element_wise("i", pc.cast(pa.array(np.arange(N_ITEMS)), pa.string()), "")
    user_names = pc.binary_join_element_wise("u", pc.cast(pa.array(np.arange(n_users)), pa.string()), "")
    for part, start in enumerate(range(0, n_rows, rows_per_file)):
        n = min(rows_per_file, n_rows - start)
        table = pa.table({
            "user_id": pc.take(user_names, pa.array(np.sort(rng.integers(0, n_users, n)))),
            "item_id": pc.take(item_names, pa.array(rng.integers(0, N_ITEMS, n))),
            "rating": rng.integers(1, 11, n) / 2.0,
            "timestamp": rng.integers(1_420_070_400, 1_514_678_400, n),
            "source_row": np.arange(start, start + n, dtype=np.int64),
        })
        pq.write_table(table, out_dir / f"part.{part:05d}.parquet", compression="snappy")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="about this many interactions")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import dask.dataframe  # noqa: F401  imported before the clocks start, like pyarrow below
    import pyarrow.parquet  # noqa: F401

    from pipelines.data.ingest import run_ingest
    from pipelines.data.synthetic import ROWS_PER_PARTITION

    n_users = max(1, args.rows // PER_USER)
    config = {"source": "synthetic", "n_users": n_users, "n_items": N_ITEMS, "interactions_per_user": PER_USER,
              "seed": 0}
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="recsys-synthetic-") as tmp:
        result: dict = {}
        ours_wall, ours_cpu = timed(lambda: result.update(run_ingest(config, Path(tmp) / "lake", "bench")))
        rows = int(result["rows"])
        files = len(list(Path(result["snapshot_uri"]).glob("*.parquet")))
        ref_wall, ref_cpu = timed(lambda: numpy_reference(Path(tmp) / "reference", rows, n_users, ROWS_PER_PARTITION))

    entry = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "rows": rows,
        "files": files,
        "ours": {"what": "run_ingest(source=synthetic): generate, write Parquet, checksum, items, manifest",
                 "wall_seconds": ours_wall, "cpu_seconds": ours_cpu, "rows_per_second": round(rows / ours_wall)},
        "reference": {"what": "numpy uniform random rows, same schema, pyarrow write_table, same codec and files",
                      "wall_seconds": ref_wall, "cpu_seconds": ref_cpu, "rows_per_second": round(rows / ref_wall)},
        "ratio_wall_ours_over_reference": round(ours_wall / ref_wall, 2),
        "ratio_cpu_ours_over_reference": round(ours_cpu / ref_cpu, 2),
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "load_average_at_start": [round(x, 2) for x in load_start],
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
    }
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results[str(args.rows)] = entry
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(entry, indent=2))
    return entry


if __name__ == "__main__":
    main()
