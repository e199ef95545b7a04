#!/usr/bin/env bash
# The GPU path, measured on one CUDA GPU in under 8 minutes: install the GPU extra from wheels
# carried along (the GPU machine has no network), run the `gpu`-marked tests, then time ALS and
# EASE on a 20M-interaction synthetic matrix and one deep-model epoch against the CPU path
# (benchmarks/gpu_bench.py), print the speedups and write benchmarks/results/gpu.json.
#
#   benchmarks/gpu_check.sh --fetch-wheels   # on a machine that reaches PyPI: cp312 wheels into .whl/
#   benchmarks/gpu_check.sh                  # on the GPU machine, from the repository root, .whl/ beside
#
# With the device tool: fetch here, then run(command="bash benchmarks/gpu_check.sh", carry=[".whl"],
# timeout_s=540); results come back from $OUT when it is set.
#
# What travels: the GPU extra's dask-cuda and the pure-Python/small packages our code needs that
# the GPU image lacks (pydantic, dask, distributed, ...), about 10 MB. CuPy does not: the
# cupy-cuda12x wheel is about 130 MB (over the 64 MiB a call may carry) and wants CUDA 12
# libraries; the GPU image ships CuPy of the same release built for its own CUDA, which is used
# and recorded in gpu.json. Exits 2 with the reason when no GPU is usable.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
PYTHON=${PYTHON:-python3}
# Pinned as in pyproject.toml / the lock (the `gpu` extra and the core packages the image lacks).
PACKAGES=(
  dask-cuda==26.10.0 dask==2026.7.1 distributed==2026.7.1 partd==1.4.2 locket==1.0.0 zict==3.0.0
  tblib==3.2.2 tornado==6.6.1 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
  typing-inspection==0.4.5 dill==0.4.1
)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  exclude="$(git rev-parse --git-common-dir)/info/exclude"
  grep -qx "/$WHEELS/" "$exclude" 2>/dev/null || echo "/$WHEELS/" >>"$exclude"
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELS" "${PACKAGES[@]}"
  du -sh "$WHEELS"
  exit 0
fi

started=$SECONDS
die() { echo "gpu_check: $*" >&2; exit 2; }
command -v nvidia-smi >/dev/null || die "no nvidia-smi: this machine has no NVIDIA GPU (or no driver); nothing to measure"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || die "nvidia-smi sees no usable GPU"
[[ -d "$WHEELS" ]] || die "no $WHEELS/ folder: run 'benchmarks/gpu_check.sh --fetch-wheels' where PyPI is reachable and carry it along"

echo "== installing the GPU extra from $WHEELS/ ($(ls "$WHEELS" | wc -l) wheels)"
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PYTHON" - <<'EOF' || die "the GPU stack does not import or sees no device (above)"
import cupy, torch, dask_cuda, pydantic
print(f"cupy {cupy.__version__} ({cupy.cuda.runtime.getDeviceCount()} device(s)), torch {torch.__version__} "
      f"(cuda {torch.cuda.is_available()}), dask-cuda {dask_cuda.__version__}, pydantic {pydantic.__version__}")
cupy.zeros(1)
assert torch.cuda.is_available(), "torch sees no CUDA device"
EOF

echo "== gpu-marked tests"
tests_rc=0
timeout 180 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider --timeout 120 tests/models tests/compute || tests_rc=$?
echo "gpu tests exit status $tests_rc ($((SECONDS - started)) s so far)"

echo "== timings: GPU against the CPU path"
bench_rc=0
# Bounded so that the whole check ends inside 8 minutes; gpu.json is written after every step.
timeout $((450 - (SECONDS - started))) "$PYTHON" benchmarks/gpu_bench.py --output benchmarks/results/gpu.json || bench_rc=$?
if [[ -n "${OUT:-}" && -f benchmarks/results/gpu.json ]]; then cp benchmarks/results/gpu.json "$OUT/"; fi
echo "gpu_check: tests exit $tests_rc, benchmark exit $bench_rc, $((SECONDS - started)) s in all"
if [[ $tests_rc -ne 0 || $bench_rc -ne 0 ]]; then exit 1; fi
