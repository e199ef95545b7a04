"""Torch device resolution: explicit -> $RECSYS_DEVICE -> CPU; GPU requests fall back with a warning."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (the deep models need it)")

from pipelines.compute import torch_device  # noqa: E402
from pipelines.compute.torch_device import cuda_available, resolve_torch_device  # noqa: E402


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch_device, "cuda_available", lambda: (False, "no CUDA device in this test"))
    monkeypatch.delenv("RECSYS_DEVICE", raising=False)


def test_cpu_is_the_default(no_cuda):
    assert resolve_torch_device() == torch.device("cpu")
    assert resolve_torch_device(" CPU ") == torch.device("cpu")


@pytest.mark.parametrize("requested", ["gpu", "cuda", "CUDA:1"])
def test_gpu_without_cuda_warns_and_falls_back(no_cuda, requested, caplog):
    with pytest.warns(RuntimeWarning, match="GPU requested.*not usable.*no CUDA device in this test"):
        assert resolve_torch_device(requested) == torch.device("cpu")
    assert "falling back to the CPU" in caplog.text


def test_auto_without_cuda_is_quietly_cpu(no_cuda):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_torch_device("auto") == torch.device("cpu")


def test_environment_variable_is_read_when_nothing_is_explicit(no_cuda, monkeypatch):
    monkeypatch.setenv("RECSYS_DEVICE", "auto")
    assert resolve_torch_device() == torch.device("cpu")
    monkeypatch.setenv("RECSYS_DEVICE", "gpu")
    with pytest.warns(RuntimeWarning, match=r"\$RECSYS_DEVICE='gpu'"):
        assert resolve_torch_device() == torch.device("cpu")
    assert resolve_torch_device("cpu") == torch.device("cpu")  # explicit beats the environment
    monkeypatch.setenv("RECSYS_DEVICE", "quantum")
    with pytest.raises(ValueError, match=r"\$RECSYS_DEVICE must be one of .*got 'quantum'"):
        resolve_torch_device()


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "gpu0", "mps"])
def test_invalid_device_is_a_value_error_naming_it(no_cuda, bad):
    with pytest.raises(ValueError, match=rf"device must be one of 'cpu', 'gpu', 'cuda', 'cuda:N' or 'auto'; got '{bad}'"):
        resolve_torch_device(bad)


def test_cuda_present_is_used(monkeypatch):
    """With CUDA reported present, gpu/auto/cuda:N map to CUDA devices (no tensor is made)."""
    monkeypatch.setattr(torch_device, "cuda_available", lambda: (True, "1 CUDA device(s)"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.delenv("RECSYS_DEVICE", raising=False)
    assert resolve_torch_device("gpu") == torch.device("cuda")
    assert resolve_torch_device("auto") == torch.device("cuda")
    assert resolve_torch_device("cuda:0") == torch.device("cuda", 0)
    with pytest.warns(RuntimeWarning, match="cuda:3 asked for but torch sees 1 CUDA device"):
        assert resolve_torch_device("cuda:3") == torch.device("cpu")


@pytest.mark.gpu
def test_gpu_is_resolved_and_computes_like_the_cpu():
    ok, reason = cuda_available()
    if not ok:
        pytest.skip(f"no usable CUDA device: {reason}")
    device = resolve_torch_device("gpu")
    assert device.type == "cuda"
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(64, 32, generator=generator, dtype=torch.float64)
    b = torch.randn(32, 16, generator=generator, dtype=torch.float64)
    torch.testing.assert_close((a.to(device) @ b.to(device)).cpu(), a @ b)
