"""GPU against CPU for ALS, EASE and one deep-model epoch on a 20M-interaction synthetic matrix.

Run by ``benchmarks/gpu_check.sh`` on a machine with a CUDA GPU (it refuses to run without
one: exit status 2 and the reason). Each step is timed on the GPU after a small warm-up fit
(CUDA context, cuSPARSE/cuBLAS handles, kernel compilation), then on the CPU path with every
core, and the speedup printed. ALS runs fewer iterations on the CPU (its time per iteration is
what is compared); EASE's regularization is fixed so that only the solve is timed; the deep
model (Mult-VAE) trains one epoch on the most active users.

    python benchmarks/gpu_bench.py                       # ml-20m-sized: 138k x 27k, 20M entries
    python benchmarks/gpu_bench.py --nnz 2000000 --users 20000 --items 5000   # a quick look

Writes ``benchmarks/results/gpu.json`` unless ``--output`` says otherwise.
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

RESULTS = ROOT / "benchmarks" / "results"
# implicit's published GPU ALS time per iteration on ml-20m (A6000): the yardstick.
IMPLICIT_A6000_SECONDS_PER_ITERATION = 0.33


def synthetic_confidences(n_users: int, n_items: int, nnz: int, seed: int) -> sp.csr_matrix:
    """Users x items confidences ``1 + 0.5 r`` (r in 1..5) with Zipf-like user activity and item
    popularity; duplicates merged, so slightly fewer than ``nnz`` entries remain."""
    rng = np.random.default_rng(seed)
    item_weight = 1.0 / (rng.permutation(n_items) + 10.0) ** 0.9
    user_weight = rng.lognormal(0.0, 1.0, size=n_users)
    draw = int(nnz * 1.03)  # duplicates are merged below
    users = rng.choice(n_users, size=draw, p=user_weight / user_weight.sum()).astype(np.int32)
    items = rng.choice(n_items, size=draw, p=item_weight / item_weight.sum()).astype(np.int32)
    ratings = rng.integers(1, 6, size=draw).astype(np.float32)
    matrix = sp.csr_matrix((ratings, (users, items)), shape=(n_users, n_items))
    matrix.sum_duplicates()
    matrix.data = np.minimum(matrix.data, 5.0)
    matrix.data = 1.0 + 0.5 * matrix.data
    return matrix


def timed(label: str, fit) -> float:
    start = time.perf_counter()
    fit()
    seconds = time.perf_counter() - start
    print(f"  {label:34s} {seconds:8.2f} s", flush=True)
    return seconds


def bench_als(matrix: sp.csr_matrix, gpu_iterations: int, cpu_iterations: int, threads: int) -> dict:
    from pipelines.models.als import AlsRecommender
    from pipelines.models.als_solver import compiled_cg_kernel

    def fit(device: str, iterations: int, train: sp.csr_matrix) -> None:
        AlsRecommender(factors=64, iterations=iterations, cg_steps=3, regularization=10.0, device=device,
                       num_threads=threads, calculate_training_loss=False).fit(train)

    timed("ALS warm-up (GPU, small)", lambda: fit("gpu", 1, matrix[:10_000]))
    gpu = timed(f"ALS GPU, {gpu_iterations} iterations", lambda: fit("gpu", gpu_iterations, matrix))
    timed("ALS warm-up (CPU, small)", lambda: fit("cpu", 1, matrix[:10_000]))  # loads the numba kernel
    cpu = timed(f"ALS CPU, {cpu_iterations} iterations", lambda: fit("cpu", cpu_iterations, matrix))
    gpu_per, cpu_per = gpu / gpu_iterations, cpu / cpu_iterations
    return {
        "factors": 64, "cg_steps": 3, "cpu_threads": threads,
        "cpu_solver": "numba" if compiled_cg_kernel() is not None else "numpy",
        "gpu_iterations": gpu_iterations, "cpu_iterations": cpu_iterations,
        "gpu_seconds_per_iteration": round(gpu_per, 4), "cpu_seconds_per_iteration": round(cpu_per, 4),
        "speedup": round(cpu_per / gpu_per, 2),
        "implicit_a6000_ml20m_seconds_per_iteration": IMPLICIT_A6000_SECONDS_PER_ITERATION,
        "below_implicit_a6000": gpu_per < IMPLICIT_A6000_SECONDS_PER_ITERATION,
        "note": "per iteration = whole fit (setup and transfers included) / iterations",
    }


def bench_ease(matrix: sp.csr_matrix) -> dict:
    from pipelines.models.ease import EaseRecommender

    def fit(device: str, train: sp.csr_matrix) -> None:
        EaseRecommender(regularization=500.0, device=device, max_items=train.shape[1]).fit(train)

    timed("EASE warm-up (GPU, small)", lambda: fit("gpu", matrix[:, :2_000]))
    gpu = timed(f"EASE GPU, {matrix.shape[1]} items", lambda: fit("gpu", matrix))
    cpu = timed(f"EASE CPU, {matrix.shape[1]} items", lambda: fit("cpu", matrix))
    return {"items": matrix.shape[1], "regularization": 500.0, "gpu_seconds": round(gpu, 3),
            "cpu_seconds": round(cpu, 3), "speedup": round(cpu / gpu, 2)}


def bench_deep_epoch(matrix: sp.csr_matrix, users: int) -> dict:
    from pipelines.models.deep.multvae import MultVaeRecommender

    active = np.sort(np.argsort(-np.diff(matrix.indptr))[:users])
    train = matrix[active]

    def fit(device: str, rows: sp.csr_matrix) -> None:
        MultVaeRecommender(epochs=1, device=device, seed=0).fit(rows)

    timed("Mult-VAE warm-up (GPU, small)", lambda: fit("cuda", train[:2_000]))
    gpu = timed(f"Mult-VAE 1 epoch GPU, {users} users", lambda: fit("cuda", train))
    cpu = timed(f"Mult-VAE 1 epoch CPU, {users} users", lambda: fit("cpu", train))
    return {"model": "multvae", "users": int(train.shape[0]), "items": int(train.shape[1]),
            "interactions": int(train.nnz), "gpu_seconds": round(gpu, 3), "cpu_seconds": round(cpu, 3),
            "speedup": round(cpu / gpu, 2), "note": "one epoch plus its validation pass and final encoding"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=138_000)
    parser.add_argument("--items", type=int, default=27_000)
    parser.add_argument("--nnz", type=int, default=20_000_000)
    parser.add_argument("--gpu-iterations", type=int, default=15)
    parser.add_argument("--cpu-iterations", type=int, default=2)
    parser.add_argument("--deep-users", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS / "gpu.json")
    args = parser.parse_args(argv)

    from pipelines.compute.backend import gpu_available
    from pipelines.compute.torch_device import cuda_available

    cupy_ok, cupy_reason = gpu_available()
    torch_ok, torch_reason = cuda_available()
    if not (cupy_ok and torch_ok):
        print(f"gpu_bench: no usable GPU (CuPy: {cupy_reason}; torch: {torch_reason})", file=sys.stderr)
        return 2

    import cupy
    import torch

    threads = len(os.sched_getaffinity(0))
    start = time.perf_counter()
    matrix = synthetic_confidences(args.users, args.items, args.nnz, args.seed)
    print(f"matrix {matrix.shape[0]} x {matrix.shape[1]}, {matrix.nnz} entries "
          f"({time.perf_counter() - start:.1f} s)", flush=True)

    props = cupy.cuda.runtime.getDeviceProperties(0)
    result = {
        "benchmark": "gpu",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": {"name": "synthetic Zipf", "users": matrix.shape[0], "items": matrix.shape[1],
                    "nnz": int(matrix.nnz), "confidence": "1 + 0.5 * rating"},
        "steps": {},
        "machine": {
            "gpu": props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
            "gpu_memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
            "cpu_threads": threads, "python": platform.python_version(),
            "cupy": cupy.__version__, "torch": torch.__version__, "numpy": np.__version__,
        },
    }
    steps = result["steps"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for name, run in (
        ("als", lambda: bench_als(matrix, args.gpu_iterations, args.cpu_iterations, threads)),
        ("ease", lambda: bench_ease(matrix)),
        ("deep_epoch", lambda: bench_deep_epoch(matrix, args.deep_users)),
    ):
        try:
            steps[name] = run()
        except Exception as exc:  # record and go on: one failing step must not hide the others' timings
            steps[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"  {name} FAILED: {steps[name]['error']}", flush=True)
        # Written after every step: a run stopped at its time limit keeps what it measured.
        args.output.write_text(json.dumps(result, indent=2) + "\n")

    print("\nspeedups over the CPU path:")
    for name, step in steps.items():
        print(f"  {name:12s} {step.get('speedup', step.get('error'))}")
    if "gpu_seconds_per_iteration" in steps.get("als", {}):
        print(f"  ALS GPU s/iteration {steps['als']['gpu_seconds_per_iteration']} "
              f"(implicit on an A6000, ml-20m: {IMPLICIT_A6000_SECONDS_PER_ITERATION})")
    print(f"wrote {args.output}")
    return 1 if any("error" in step for step in steps.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
