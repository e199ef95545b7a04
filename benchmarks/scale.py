"""The training DAG at 1M, 5M and 20M interactions: each step's seconds and peak memory, and how they grow.

For each size, a fresh Airflow home (SQLite) and platform home are made, and a separate process
runs the real ``recsys_training`` DAG (``dag.test()``: every task of the DAG in order, the same
code the scheduler runs) on the synthetic source with the form's defaults, only the sizes set
(``synthetic_users`` = N / ``--per-user``, ``synthetic_items``). Recorded per size:

- the DAG run's wall time and each task's seconds (from its task instance),
- each step's seconds and peak RSS as the steps measure them (``pipelines.timing``: ingest,
  clean, features, fit, evaluate, save, register; read from the MLflow parent run's
  ``step_*`` metrics),
- the peak resident memory of the whole process tree, sampled from outside every 0.1 s
  (Dask worker processes included, should the cluster use them),
- nDCG@10 of each trained model, and the load average before and after.

Then, across sizes: a least-squares fit of log(seconds) on log(interactions) for the run and for
each step (the exponent: 1.0 is linear). Writes ``benchmarks/results/scale.json``, a markdown
summary ``scale.md`` and a PNG plot ``scale.png`` (seconds and peak memory against interactions).

    .venv/bin/python benchmarks/scale.py                      # 1M, 5M, 20M
    .venv/bin/python benchmarks/scale.py --sizes 200k 1M      # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SUFFIX = {"k": 1_000, "M": 1_000_000}

# Run inside the child process: the DAG, then what it measured, as one JSON line on stdout.
CHILD = r"""
import json, sys, time
from datetime import datetime, timezone

conf = json.loads(sys.argv[1])
from airflow.dag_processing.dagbag import DagBag

dag = DagBag(dag_folder=sys.argv[2]).get_dag("recsys_training")
when = datetime(2026, 1, 2, tzinfo=timezone.utc)
started = time.perf_counter()
run = dag.test(run_conf=conf, logical_date=when, run_after=when)
wall = time.perf_counter() - started

from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session

tasks = {}
with create_session() as session:
    for ti in session.query(TaskInstance).filter(TaskInstance.run_id == run.run_id):
        if ti.start_date and ti.end_date:
            name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            tasks[name] = {"seconds": round((ti.end_date - ti.start_date).total_seconds(), 3), "state": str(ti.state)}

import mlflow
client = mlflow.MlflowClient()
experiments = [e.experiment_id for e in client.search_experiments()]
parents = [r for r in client.search_runs(experiments) if "mlflow.parentRunId" not in r.data.tags]
steps, ndcg = {}, {}
for r in parents:
    for key, value in r.data.metrics.items():
        for prefix, field in (("step_seconds_", "seconds"), ("step_peak_rss_mib_", "peak_rss_mib")):
            if key.startswith(prefix):
                steps.setdefault(key[len(prefix):], {})[field] = value
    for child in client.search_runs([r.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{r.info.run_id}'"):
        if "ndcg_at_10" in child.data.metrics:
            ndcg[child.data.tags.get("recsys.model", child.info.run_name)] = round(child.data.metrics["ndcg_at_10"], 5)
print("SCALE-RESULT " + json.dumps({"state": str(run.state), "wall_seconds": round(wall, 2), "tasks": tasks,
                                    "steps": steps, "ndcg@10": ndcg}))
"""


def parse_size(text: str) -> int:
    """'200k' -> 200000, '5M' -> 5000000, '1500' -> 1500."""
    text = text.strip()
    if text[-1:] in SUFFIX:
        return int(float(text[:-1]) * SUFFIX[text[-1]])
    return int(text)


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1_000}k" if n % 1_000 == 0 else str(n)


class TreeSampler(threading.Thread):
    """Peak summed RSS of a process and all its descendants, sampled every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_bytes = pid, interval, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop_event.is_set():
            total = 0
            try:
                for proc in [root, *root.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                break
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop_event.wait(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return round(self.peak_bytes / 2**20, 1)


def run_size(n: int, n_items: int, per_user: int, seed: int, keep: bool) -> dict:
    """One DAG run at ``n`` interactions in fresh homes; what it measured."""
    bin_dir = Path(sys.executable).parent
    n_users = max(1, n // per_user)
    conf = {"source": "synthetic", "synthetic_users": n_users, "synthetic_items": n_items,
            "interactions_per_user": per_user, "seed": seed}
    work = Path(tempfile.mkdtemp(prefix=f"recsys-scale-{label(n)}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECSYS_", "MLFLOW_"))}
    env.update({
        "AIRFLOW_HOME": str(work / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{work / 'airflow' / 'airflow.db'}",
        "RECSYS_HOME": str(work / "recsys"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'recsys' / 'mlflow.db'}",
        "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    })
    (work / "recsys").mkdir(parents=True)
    subprocess.run([str(bin_dir / "airflow"), "db", "migrate"], env=env, cwd=work, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log_path = work / "dag.log"
    load_before = os.getloadavg()
    print(f"{label(n)}: {n_users} users x {n_items} items, DAG log {log_path}", flush=True)
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(conf), str(ROOT / "dags")],
                                env=env, cwd=work, stdout=subprocess.PIPE, stderr=log_file, text=True)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        out, _ = proc.communicate()
        peak_mib = sampler.stop()
    lines = [line for line in out.splitlines() if line.startswith("SCALE-RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"the DAG run at {label(n)} failed (exit {proc.returncode}); see {log_path}")
    result = json.loads(lines[-1][len("SCALE-RESULT "):])
    if result["state"] not in ("success", "DagRunState.SUCCESS"):
        raise SystemExit(f"the DAG run at {label(n)} ended {result['state']}; see {log_path}")
    result.update({"interactions_requested": n, "users": n_users, "items": n_items, "conf": conf,
                   "peak_rss_tree_mib": peak_mib, "load_average_before": [round(x, 2) for x in load_before],
                   "load_average_after": [round(x, 2) for x in os.getloadavg()]})
    if not keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return result


def exponent(sizes: list[int], seconds: list[float]) -> float | None:
    """Slope of log(seconds) on log(size) by least squares (None with fewer than two points)."""
    import numpy as np

    pairs = [(s, t) for s, t in zip(sizes, seconds) if t and t > 0]
    if len(pairs) < 2:
        return None
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return round(float(np.polyfit(x, y, 1)[0]), 3)


def summarize(runs: dict[str, dict]) -> dict:
    """Exponents of the run's wall time and of each step, shares of each step at the largest size."""
    ordered = sorted(runs.values(), key=lambda r: r["interactions_requested"])
    sizes = [r["interactions_requested"] for r in ordered]
    steps = sorted({name for r in ordered for name in r["steps"]})
    largest = ordered[-1]
    step_total = sum(v.get("seconds", 0.0) for v in largest["steps"].values()) or 1.0
    fit = sum(v.get("seconds", 0.0) for k, v in largest["steps"].items() if k.startswith("fit_"))
    evaluate = sum(v.get("seconds", 0.0) for k, v in largest["steps"].items() if k.startswith("evaluate_"))
    return {
        "exponent_wall": exponent(sizes, [r["wall_seconds"] for r in ordered]),
        "exponent_steps_total": exponent(sizes, [sum(v.get("seconds", 0.0) for v in r["steps"].values()) for r in ordered]),
        "exponent_by_step": {s: exponent(sizes, [r["steps"].get(s, {}).get("seconds", 0.0) for r in ordered]) for s in steps},
        "largest": label(largest["interactions_requested"]),
        "share_of_steps_at_largest": {k: round(v.get("seconds", 0.0) / step_total, 3) for k, v in largest["steps"].items()},
        "evaluate_over_fit_at_largest": round(evaluate / fit, 3) if fit else None,
        "peak_rss_tree_mib_at_largest": largest["peak_rss_tree_mib"],
        "bars": {
            "peak_memory_at_20M_under_12GiB": (largest["peak_rss_tree_mib"] < 12 * 1024) if largest["interactions_requested"] >= 20_000_000 else None,
            # The larger of the two exponents: the run's wall time carries a fixed Airflow/MLflow
            # overhead that flatters the slope at small sizes; the steps' sum does not.
            "exponent_at_most_1.15": None if len(sizes) < 2 else max(
                exponent(sizes, [r["wall_seconds"] for r in ordered]),
                exponent(sizes, [sum(v.get("seconds", 0.0) for v in r["steps"].values()) for r in ordered])) <= 1.15,
            "evaluate_not_longer_than_fit": (evaluate <= fit) if fit else None,
        },
    }


def write_markdown(data: dict, path: Path) -> None:
    runs = sorted(data["runs"].values(), key=lambda r: r["interactions_requested"])
    steps = sorted({name for r in runs for name in r["steps"]})
    head = "| step | " + " | ".join(label(r["interactions_requested"]) for r in runs) + " | exponent |"
    lines = [f"# Training DAG at scale ({data['when']})", "",
             f"Synthetic source, {runs[0]['items']} items, {data['per_user']} interactions per user, the form's defaults;"
             f" {data['machine']['cpus']} CPUs. Seconds (peak RSS MiB) per step, from `pipelines.timing`.", "",
             head, "|" + "---|" * (len(runs) + 2)]
    for s in steps:
        cells = []
        for r in runs:
            v = r["steps"].get(s)
            cells.append(f"{v.get('seconds', 0):.1f} ({v.get('peak_rss_mib', 0):.0f})" if v else "")
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {data['summary']['exponent_by_step'].get(s)} |")
    lines.append("| **DAG run wall** | " + " | ".join(f"{r['wall_seconds']:.1f}" for r in runs)
                 + f" | {data['summary']['exponent_wall']} |")
    lines.append("| **peak RSS, process tree (MiB)** | " + " | ".join(f"{r['peak_rss_tree_mib']:.0f}" for r in runs) + " | |")
    lines.append("| nDCG@10 | " + " | ".join(", ".join(f"{k} {v:.4f}" for k, v in sorted(r["ndcg@10"].items())) for r in runs) + " | |")
    s = data["summary"]
    lines += ["", f"Share of the steps' time at {s['largest']}: "
              + ", ".join(f"{k} {v:.0%}" for k, v in sorted(s["share_of_steps_at_largest"].items(), key=lambda kv: -kv[1])) + ".",
              f"Evaluation / fit at {s['largest']}: {s['evaluate_over_fit_at_largest']}. Bars: {s['bars']}.", ""]
    path.write_text("\n".join(lines))


def write_plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(data["runs"].values(), key=lambda r: r["interactions_requested"])
    sizes = [r["interactions_requested"] for r in runs]
    steps = sorted({name for r in runs for name in r["steps"]})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for s in steps:
        left.plot(sizes, [r["steps"].get(s, {}).get("seconds", float("nan")) for r in runs], marker="o", label=s)
        right.plot(sizes, [r["steps"].get(s, {}).get("peak_rss_mib", float("nan")) / 1024 for r in runs], marker="o", label=s)
    left.plot(sizes, [r["wall_seconds"] for r in runs], marker="s", color="black", linewidth=2, label="DAG run")
    right.plot(sizes, [r["peak_rss_tree_mib"] / 1024 for r in runs], marker="s", color="black", linewidth=2, label="process tree")
    for ax, ylabel in ((left, "seconds"), (right, "peak RSS (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    left.set_title(f"time (exponent {data['summary']['exponent_wall']})")
    right.set_title("peak memory")
    right.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1M", "5M", "20M"])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--per-user", type=int, default=40)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep each size's Airflow/MLflow homes and DAG log")
    parser.add_argument("--output", type=Path, default=RESULTS / "scale.json")
    args = parser.parse_args(argv)

    runs = {}
    for text in args.sizes:
        n = parse_size(text)
        runs[label(n)] = run_size(n, args.items, args.per_user, args.seed, args.keep)
        r = runs[label(n)]
        print(f"{label(n)}: {r['wall_seconds']:.1f} s, peak {r['peak_rss_tree_mib']:.0f} MiB, nDCG {r['ndcg@10']}", flush=True)
    data = {
        "benchmark": "scale",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "benchmarks/scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "per_user": args.per_user,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "runs": runs,
    }
    data["summary"] = summarize(runs)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=2) + "\n")
    write_markdown(data, args.output.with_suffix(".md"))
    write_plot(data, args.output.with_suffix(".png"))
    print(json.dumps(data["summary"], indent=2))
    return data


if __name__ == "__main__":
    main()
