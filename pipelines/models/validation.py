"""Early stopping for every iterative family: the held-out carve, the one metric, the one loop.

Torch-free. A family that trains epoch by epoch (BPR here, the PyTorch models through
:mod:`pipelines.models.deep.training`) hands :func:`train_epochs` a function that runs one
epoch and one that scores validation users; the loop measures nDCG@10 after each epoch, keeps
the best epoch's state and stops after ``patience`` epochs without a better one. The same
carve and metric serve a closed-form family that chooses a hyperparameter on held-out data
(EASE's regularization).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from pipelines.models.base import IterationCallback

log = logging.getLogger(__name__)

#: Cut-off of the validation metric that drives early stopping (reported as ``ndcg@10``).
VALIDATION_K = 10
METRIC = f"ndcg@{VALIDATION_K}"
#: Users scored at once for the validation metric (bounds a block's n_users x n_items scores).
_SCORE_BLOCK = 1024


def carve_holdout(
    matrix: sp.csr_matrix, fraction: float, rng: np.random.Generator, eligible: np.ndarray | None = None
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split each user's items at random into (kept, held out), ``fraction`` of them held out.

    A user with n items holds out ``round(fraction * n)`` of them, never all: users with one
    item keep it. With ``eligible`` (a mask over the stored entries), only eligible entries are
    held out, ``round(fraction * n_eligible)`` of a user's. Both parts keep the shape of
    ``matrix``; together they are ``matrix``.
    """
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    eligible = np.ones(matrix.nnz, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    order = np.lexsort((rng.random(matrix.nnz), ~eligible, rows))  # eligible first, random within each row
    rank = np.empty(matrix.nnz, dtype=np.int64)
    rank[order] = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], counts)
    n_eligible = np.bincount(rows, weights=eligible, minlength=matrix.shape[0]).astype(np.int64)
    n_held = np.minimum(np.rint(fraction * n_eligible).astype(np.int64), counts - 1)
    held = rank < n_held[rows]

    def part(mask: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((matrix.data[mask], (rows[mask], matrix.indices[mask])), shape=matrix.shape)

    return part(~held), part(held)


@dataclass(frozen=True)
class ValidationSet:
    """Users scored each epoch, their items to exclude, and their relevant (held-out) items.

    ``seen`` and ``relevant`` have one row per entry of ``users`` (in that order).
    """

    users: np.ndarray
    seen: sp.csr_matrix
    relevant: sp.csr_matrix

    @classmethod
    def build(
        cls, seen: sp.csr_matrix, relevant: sp.csr_matrix, max_users: int, rng: np.random.Generator
    ) -> "ValidationSet | None":
        """Users with a relevant item (a seeded sample of ``max_users`` beyond that); None if none."""
        users = np.flatnonzero(np.diff(relevant.indptr) > 0)
        if len(users) == 0:
            return None
        if len(users) > max_users:
            users = np.sort(rng.choice(users, size=max_users, replace=False))
        return cls(users=users, seen=seen[users], relevant=relevant[users])


def split_for_early_stopping(
    matrix: sp.csr_matrix,
    validation: sp.csr_matrix | None,
    fraction: float,
    max_users: int,
    rng: np.random.Generator,
    eligible: np.ndarray | None = None,
) -> tuple[sp.csr_matrix, ValidationSet | None]:
    """The matrix to train on and the validation set that decides the best epoch.

    With ``validation`` given: train on all of ``matrix``, validate on ``validation`` (items
    of ``matrix`` excluded from the rankings). Otherwise hold out ``fraction`` of each user's
    items of ``matrix``, only ``eligible`` ones when given (a warm start holds out what the
    previous model did not train on, whose recall would flatter the first epochs); no
    validation when ``fraction`` is 0 or nothing could be held out.
    """
    if validation is not None:
        return matrix, ValidationSet.build(matrix, validation, max_users, rng)
    if fraction <= 0:
        return matrix, None
    kept, held = carve_holdout(matrix, fraction, rng, eligible)
    return kept, ValidationSet.build(kept, held, max_users, rng)


def validation_ndcg(score_users: Callable[[np.ndarray], Any], validation: ValidationSet) -> float:
    """nDCG@10 of the top 10 unseen items per validation user against their relevant items.

    ``score_users(users)`` returns (len(users), n_items) scores, a NumPy array or anything
    ``np.asarray`` takes (a CPU tensor); seen items are excluded before the top 10.
    """
    from pipelines.compute.topk import top_k
    from pipelines.evaluation.metrics import ranking_metrics

    n_items = validation.relevant.shape[1]
    k = min(VALIDATION_K, n_items)
    tops = []
    for start in range(0, len(validation.users), _SCORE_BLOCK):
        scores = np.array(score_users(validation.users[start : start + _SCORE_BLOCK]), dtype=np.float32)
        tops.append(top_k(scores, k, exclude=validation.seen[start : start + _SCORE_BLOCK])[0])
    return float(ranking_metrics(np.concatenate(tops), validation.relevant, VALIDATION_K, n_items)[METRIC])


@dataclass
class TrainingHistory:
    """What the loop saw: per-epoch loss and validation nDCG@10, and the epoch kept (0-based)."""

    losses: list[float] = field(default_factory=list)
    validation_ndcg: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = math.nan
    seconds: float = 0.0


def train_epochs(
    run_epoch: Callable[[int], float],
    validate: Callable[[], float] | None,
    snapshot: Callable[[], Any],
    restore: Callable[[Any], None],
    *,
    epochs: int,
    patience: int,
    model_name: str,
    callback: IterationCallback | None = None,
    on_best: Callable[[int, float], None] | None = None,
) -> TrainingHistory:
    """Run up to ``epochs`` epochs; end holding the best epoch's state (by validation nDCG@10).

    Each epoch: ``run_epoch(epoch)`` returns the mean loss; with ``validate`` (None: no
    validation, every epoch runs and the last is kept) a better nDCG@10 keeps ``snapshot()``
    and calls ``on_best(epoch, metric)``, and ``patience`` epochs without one stop training
    (``patience`` 0: never stop early); ``restore`` puts the best snapshot back at the end.
    ``callback(epoch, loss, {"ndcg@10": value} or None)`` follows every epoch. Raises
    FloatingPointError naming the epoch when the loss stops being finite.
    """
    history = TrainingHistory()
    best_state: Any = None
    stale = 0
    started = time.perf_counter()
    for epoch in range(epochs):
        loss = float(run_epoch(epoch))
        if not math.isfinite(loss):
            raise FloatingPointError(f"{model_name} training loss became {loss} at epoch {epoch}; lower learning_rate")
        history.losses.append(loss)
        metrics = None
        improved = validate is None
        if validate is not None:
            ndcg = float(validate())
            history.validation_ndcg.append(ndcg)
            metrics = {METRIC: ndcg}
            improved = not ndcg <= history.best_metric  # the first epoch always counts (NaN)
        if improved:
            history.best_epoch, history.best_metric, stale = epoch, (metrics or {}).get(METRIC, math.nan), 0
            if validate is not None:
                best_state = snapshot()
            if on_best is not None:
                on_best(epoch, history.best_metric)
        else:
            stale += 1
        log.debug("%s epoch %d loss %.6g %s", model_name, epoch, loss, metrics or "")
        if callback is not None:
            callback(epoch, loss, metrics)
        if patience and stale >= patience:
            log.info("%s: no better %s for %d epochs, stopping after epoch %d", model_name, METRIC, stale, epoch)
            break
    if best_state is not None:
        restore(best_state)
    history.seconds = time.perf_counter() - started
    log.info(
        "%s trained %d epochs in %.1fs; kept epoch %d (%s %.4f)",
        model_name, len(history.losses), history.seconds, history.best_epoch, METRIC, history.best_metric,
    )
    return history
