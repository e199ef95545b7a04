"""The array backend: device resolution and the gathered row-wise dot product."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from pipelines.compute import backend as backend_module
from pipelines.compute.backend import get_backend, gpu_available, resolve_device


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(backend_module, "gpu_available", lambda: (False, "no CUDA device in this test"))
    monkeypatch.delenv("RECSYS_DEVICE", raising=False)


def test_cpu_is_the_default(no_gpu):
    assert resolve_device() == "cpu"
    assert resolve_device("CPU") == "cpu"


def test_gpu_without_a_gpu_warns_and_falls_back(no_gpu):
    with pytest.warns(RuntimeWarning, match="GPU requested but not usable.*no CUDA device in this test"):
        assert resolve_device("gpu") == "cpu"
    with pytest.warns(RuntimeWarning):
        assert get_backend("cuda").name == "numpy"


def test_auto_without_a_gpu_is_quietly_cpu(no_gpu):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_device("auto") == "cpu"


def test_environment_variable_is_used(no_gpu, monkeypatch):
    monkeypatch.setenv("RECSYS_DEVICE", "auto")
    assert resolve_device() == "cpu"
    monkeypatch.setenv("RECSYS_DEVICE", "quantum")
    with pytest.raises(ValueError, match=r"\$RECSYS_DEVICE must be one of 'cpu', 'gpu', 'auto'.*'quantum'"):
        resolve_device()


def test_invalid_device_names_the_allowed_values(no_gpu):
    with pytest.raises(ValueError, match=r"device must be one of 'cpu', 'gpu', 'auto'.*got 'tpu'"):
        resolve_device("tpu")


def test_cpu_backend_round_trip():
    backend = get_backend("cpu")
    assert backend.name == "numpy" and not backend.is_gpu
    assert backend.sparse is sp
    array = backend.asarray([1, 2, 3], dtype=np.float32)
    assert isinstance(backend.to_host(array), np.ndarray)
    matrix = backend.csr(sp.coo_matrix(np.eye(3)))
    assert matrix.format == "csr" and matrix.dtype == np.float32
    assert backend.csr(sp.eye(2), dtype=np.float64).dtype == np.float64


def _rowdot_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    left = rng.normal(size=(50, 7)).astype(np.float32)
    right = rng.normal(size=(9, 7)).astype(np.float32)
    rows = rng.integers(0, 9, size=50).astype(np.int32)
    return left, right, rows


def test_gathered_rowdot_matches_the_definition():
    left, right, rows = _rowdot_case()
    got = get_backend("cpu").gathered_rowdot(left, right, rows)
    np.testing.assert_allclose(got, np.einsum("ij,ij->i", left, right[rows]), rtol=1e-5)
    assert got.dtype == np.float32
    empty = get_backend("cpu").gathered_rowdot(left[:0], right, rows[:0])
    assert empty.shape == (0,)


@pytest.mark.gpu
def test_gpu_backend_matches_numpy():
    ok, reason = gpu_available()
    if not ok:
        pytest.skip(f"no usable GPU: {reason}")
    gpu, cpu = get_backend("gpu"), get_backend("cpu")
    left, right, rows = _rowdot_case(1)
    got = gpu.to_host(gpu.gathered_rowdot(gpu.asarray(left), gpu.asarray(right), gpu.asarray(rows)))
    np.testing.assert_allclose(got, cpu.gathered_rowdot(left, right, rows), rtol=1e-5, atol=1e-6)
    matrix = sp.random(20, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
    dense = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    product = gpu.to_host(gpu.csr(matrix) @ gpu.asarray(dense))
    np.testing.assert_allclose(product, matrix @ dense, rtol=1e-5, atol=1e-6)
