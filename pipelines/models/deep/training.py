"""The one epoch loop of the deep models: device, threads, seeding, early stopping, checkpoints.

A model supplies its ``nn.Module``, a function that runs one training epoch and returns the
mean loss, and a function that scores validation users; :func:`train_epochs` does the rest,
as nanoGPT's loop does: resolve the device once, evaluate each epoch, keep the best weights,
checkpoint ``{config, epoch, best_metric, state_dict}``.

Imports torch at module level: only the deep models' ``fit`` imports this module.
"""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from pipelines.compute.torch_device import resolve_torch_device
from pipelines.evaluation.metrics import ranking_metrics
from pipelines.models.base import IterationCallback
from pipelines.models.deep.config import VALIDATION_K, DeepModelConfig
from pipelines.models.deep.data import ValidationSet

log = logging.getLogger(__name__)

METRIC = f"ndcg@{VALIDATION_K}"
#: Users scored at once for the validation metric (bounds a block's n_users x n_items scores).
_SCORE_BLOCK = 1024


@dataclass
class TrainingHistory:
    """What the loop saw: per-epoch loss and validation nDCG@10, and the epoch kept (0-based)."""

    losses: list[float] = field(default_factory=list)
    validation_ndcg: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = math.nan
    seconds: float = 0.0


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def fit_threads(requested: int) -> int:
    """CPU threads for a fit: ``requested``, or for 0 the cores the 1-minute load leaves idle.

    torch's OpenMP workers wait for each other at every operation, so on cores other
    processes keep busy more threads are slower, not faster (20 times, for a small model
    on two busy cores). 0 therefore takes every core this process may use minus the load
    average, and at least one.
    """
    if requested > 0:
        return requested
    cores = available_cores()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        busy = 0.0
    threads = max(1, min(cores, int(cores - busy + 0.5)))
    log.info("torch threads: %d (%d cores, load average %.1f)", threads, cores, busy)
    return threads


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


def validation_ndcg(score_users: Callable[[np.ndarray], torch.Tensor], validation: ValidationSet) -> float:
    """nDCG@10 of the model's top 10 unseen items against the validation set's relevant items.

    ``score_users(users)`` returns (len(users), n_items) scores as a tensor on any device; the
    masking of seen items and the top-k run there, only the indices come back.
    """
    tops = []
    for start in range(0, len(validation.users), _SCORE_BLOCK):
        users = validation.users[start : start + _SCORE_BLOCK]
        scores = score_users(users).float().clone()
        seen = validation.seen[start : start + _SCORE_BLOCK].tocoo()
        rows = torch.as_tensor(seen.row, dtype=torch.long, device=scores.device)
        cols = torch.as_tensor(seen.col, dtype=torch.long, device=scores.device)
        scores[rows, cols] = -math.inf
        k = min(VALIDATION_K, scores.shape[1])
        values, items = torch.topk(scores, k, dim=1)
        items = torch.where(torch.isfinite(values), items, torch.full_like(items, -1))
        tops.append(items.cpu().numpy())
    recommended = np.concatenate(tops)
    return ranking_metrics(recommended, validation.relevant, VALIDATION_K, validation.relevant.shape[1])[METRIC]


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
    score_users: Callable[[np.ndarray], torch.Tensor],
    validation: ValidationSet | None,
    config: DeepModelConfig,
    *,
    model_name: str,
    model_args: dict[str, Any],
    callback: IterationCallback | None = None,
) -> TrainingHistory:
    """Run up to ``config.epochs`` epochs; leave ``module`` holding the best epoch's weights.

    Each epoch: ``run_epoch(epoch)`` (train mode) returns the mean loss; with a validation
    set, nDCG@10 is measured (eval mode, no gradients), a better value keeps a copy of the
    weights (and rewrites ``<checkpoint_dir>/<model_name>-best.pt``), and ``config.patience``
    epochs without one stop training. ``callback(epoch, loss, {"ndcg@10": value})`` follows
    every epoch (metrics None without a validation set, when the last epoch is kept).
    Raises FloatingPointError when the loss stops being finite.
    """
    history = TrainingHistory()
    checkpoint = Path(config.checkpoint_dir) / f"{model_name}-best.pt" if config.checkpoint_dir else None
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    started = time.perf_counter()
    for epoch in range(config.epochs):
        module.train()
        loss = float(run_epoch(epoch))
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"{model_name} training loss became {loss} at epoch {epoch}; lower learning_rate"
            )
        history.losses.append(loss)
        metrics = None
        improved = validation is None
        if validation is not None:
            module.eval()
            with torch.no_grad():
                ndcg = validation_ndcg(score_users, validation)
            history.validation_ndcg.append(ndcg)
            metrics = {METRIC: ndcg}
            improved = not ndcg <= history.best_metric  # the first epoch always counts (NaN)
        if improved:
            history.best_epoch, history.best_metric = epoch, (metrics or {}).get(METRIC, math.nan)
            stale = 0
            if validation is not None:
                best_state = {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
            if checkpoint is not None:
                save_checkpoint(checkpoint, module, config, epoch, history.best_metric, model_args)
        else:
            stale += 1
        log.debug("%s epoch %d loss %.6g %s", model_name, epoch, loss, metrics or "")
        if callback is not None:
            callback(epoch, loss, metrics)
        if stale >= config.patience:
            log.info("%s: no better %s for %d epochs, stopping after epoch %d", model_name, METRIC, stale, epoch)
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    history.seconds = time.perf_counter() - started
    log.info(
        "%s trained %d epochs in %.1fs; kept epoch %d (%s %.4f)",
        model_name, len(history.losses), history.seconds, history.best_epoch, METRIC, history.best_metric,
    )
    return history
