"""The PyTorch side of training, shared by NCF, Mult-VAE and the GRU sequence model.

:func:`torch_session` resolves the device once, caps torch's CPU threads and forks the seeded
RNG for one fit; :func:`train_epochs` runs the shared early-stopping loop of
:mod:`pipelines.models.validation` (the one every iterative family uses) with torch's
train/eval modes, ``state_dict`` snapshots and nanoGPT-style checkpoints
``{config, epoch, best_metric, state_dict}``.

Imports torch at module level: only the deep models' ``fit`` imports this module.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from pipelines.compute.torch_device import resolve_torch_device
from pipelines.models.base import IterationCallback
from pipelines.models.deep.config import DeepModelConfig
from pipelines.models.threads import fit_threads
from pipelines.models.validation import TrainingHistory, ValidationSet, validation_ndcg
from pipelines.models.validation import train_epochs as _train_epochs


@contextmanager
def torch_session(config: DeepModelConfig) -> Iterator[torch.device]:
    """Resolve the device once, cap torch's CPU threads and seed torch for one fit.

    The global torch RNG is forked, so a fit neither depends on nor disturbs the caller's
    random state; torch's thread count is restored afterwards.
    """
    device = resolve_torch_device(config.device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(fit_threads(config.num_threads))
    cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(config.seed)
            yield device
    finally:
        torch.set_num_threads(previous_threads)


def adam(parameters: Iterable[torch.nn.Parameter], config: DeepModelConfig) -> torch.optim.Adam:
    """Adam with the config's learning rate and weight decay, fused into one kernel.

    The fused implementation (CPU and CUDA) updates millions of weights several times faster
    than the per-tensor loop, which dominates a step of the wide output layers here.
    """
    return torch.optim.Adam(parameters, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)


def save_checkpoint(
    path: Path, module: torch.nn.Module, config: DeepModelConfig, epoch: int, best_metric: float, model_args: dict[str, Any]
) -> None:
    """Write ``{config, model_args, epoch, best_metric, state_dict}`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": config.model_dump(mode="json"),
        "model_args": dict(model_args),
        "epoch": epoch,
        "best_metric": best_metric,
        "state_dict": {name: tensor.detach().cpu() for name, tensor in module.state_dict().items()},
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)  # a reader never sees half a checkpoint


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors only, no pickled code)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def train_epochs(
    module: torch.nn.Module,
    run_epoch: Callable[[int], float],
    score_users: Callable[[np.ndarray], Any],
    validation: ValidationSet | None,
    config: DeepModelConfig,
    *,
    model_name: str,
    model_args: dict[str, Any],
    callback: IterationCallback | None = None,
) -> TrainingHistory:
    """Run up to ``config.epochs`` epochs; leave ``module`` holding the best epoch's weights (eval mode).

    ``run_epoch(epoch)`` runs in train mode and returns the mean loss; with a validation set,
    nDCG@10 of ``score_users(users)`` (eval mode, no gradients; an array or tensor) decides the
    best epoch, whose weights are kept (and written to ``<checkpoint_dir>/<model_name>-best.pt``),
    and ``config.patience`` epochs without a better one stop training. See
    :func:`pipelines.models.validation.train_epochs`.
    """
    checkpoint = Path(config.checkpoint_dir) / f"{model_name}-best.pt" if config.checkpoint_dir else None

    def train_one(epoch: int) -> float:
        module.train()
        return run_epoch(epoch)

    def validate() -> float:
        module.eval()
        with torch.no_grad():
            return validation_ndcg(lambda users: _host(score_users(users)), validation)

    def on_best(epoch: int, metric: float) -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, module, config, epoch, metric, model_args)

    history = _train_epochs(
        train_one,
        None if validation is None else validate,
        lambda: {name: tensor.detach().clone() for name, tensor in module.state_dict().items()},
        module.load_state_dict,
        epochs=config.epochs,
        patience=config.patience,
        model_name=model_name,
        callback=callback,
        on_best=on_best,
    )
    module.eval()
    return history


def _host(scores: Any) -> np.ndarray:
    """Scores as a host array (a tensor comes back from its device)."""
    return scores.float().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
