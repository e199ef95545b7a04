"""Hyperparameters every deep model shares: the epoch loop, early stopping, runtime options.

Pure pydantic (no torch), so configs validate wherever the registry is used. Each model's
config subclasses :class:`DeepModelConfig` and re-declares a field to change its default.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from pipelines.models.base import ModelConfig

#: Cut-off of the validation metric that drives early stopping (reported as ``ndcg@10``).
VALIDATION_K = 10


class DeepModelConfig(ModelConfig):
    """Training-loop hyperparameters, then the runtime options (how to compute, not what)."""

    epochs: int = Field(50, ge=1, le=10_000)
    """Most passes over the training data; early stopping may end sooner."""
    batch_size: int = Field(512, ge=1, le=1_000_000)
    """Examples per optimizer step (interactions for NCF, users for Mult-VAE)."""
    learning_rate: float = Field(1e-3, gt=0.0, le=10.0, allow_inf_nan=False)
    """Adam's step size."""
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    """Adam's L2 weight decay on the dense weights (NCF's embedding tables are regularized by
    its ``l2_regularization`` instead)."""
    patience: int = Field(5, ge=1, le=1_000)
    """Epochs without a better validation nDCG@10 before training stops; the best epoch's
    weights are the final model."""
    validation_fraction: float = Field(0.1, ge=0.0, le=0.5, allow_inf_nan=False)
    """When ``fit`` gets no ``validation`` matrix: share of each user's training items held out
    (seeded) to measure nDCG@10 each epoch for early stopping. The held-out items are not
    trained on. 0 disables early stopping: every epoch runs and the last one is kept."""
    validation_users: int = Field(5_000, ge=1, le=10_000_000)
    """Most users scored for the per-epoch validation metric (a seeded sample beyond that),
    which bounds the cost of evaluating each epoch on large data."""

    # -- runtime options: where and how to compute, not what ---------------------------------
    device: str | None = Field(None, pattern=r"^(?i:cpu|gpu|auto|cuda(:\d+)?)$")
    """"cpu", "gpu"/"cuda", "cuda:N" or "auto"; None reads ``$RECSYS_DEVICE`` (else the CPU).
    A GPU request without CUDA falls back to the CPU with a warning. Runs are bit-for-bit
    reproducible on the CPU; CUDA kernels may differ in the last bits."""
    num_threads: int = Field(0, ge=0, le=1_024)
    """CPU threads torch may use during fit; 0: the cores this process may run on that the
    1-minute load average leaves idle, at least one (torch's threads wait for each other at
    every operation: on busy cores a small model trained 20 times slower on two threads than
    on one). Results depend on it only through floating-point summation order."""
    checkpoint_dir: str | None = None
    """Folder for ``<model>-best.pt`` (config, epoch, best metric, state_dict), rewritten at
    each new best epoch; None keeps the best weights in memory only."""

    runtime_options: ClassVar[frozenset[str]] = frozenset({"device", "num_threads", "checkpoint_dir"})
