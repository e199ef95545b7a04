"""Bayesian Personalized Ranking matrix factorization (Rendle et al. 2009), trained by mini-batch SGD.

For a user u, an item i they interacted with and an item j they did not, BPR maximises
``ln sigmoid(x_uij)`` with ``x_uij = p_u . (q_i - q_j) + b_i - b_j`` (an item bias ``b``), minus an
L2 penalty on every vector it touches. Each epoch visits every stored (user, item) pair once in a
seeded random order, draws one negative item per pair uniformly (redrawn when it is a positive of
that user), and applies the summed SGD updates of a whole mini-batch at once: NumPy over the
batch, no Python loop over samples.

Stored values are read as "interacted" (any positive value); weighting does not change BPR except
that zero or negative entries are not positives. With ``validation`` data, nDCG@10 on it is
measured after each epoch (:func:`pipelines.evaluation.metrics.ranking_metrics`), training stops
after ``patience`` epochs without improvement, and the best epoch's factors are kept.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from pipelines import seeding
from pipelines.models.base import IterationCallback, ModelConfig, Recommender
from pipelines.models.validation import ValidationSet, train_epochs, validation_ndcg

log = logging.getLogger(__name__)

# Redraws of a negative that turned out to be a positive; a user who has interacted with nearly
# every item could otherwise loop for long. What is left after these counts as a negative.
_NEGATIVE_REDRAWS = 10
# Standard deviation of the initial factors.
_INIT_STD = 0.1
# Largest norm of one row's summed gradient step in a batch (factors start near norm 1).
_MAX_STEP = 1.0


class BprConfig(ModelConfig):
    """Hyperparameters of :class:`BprRecommender`.
    The defaults' measured quality: ``benchmarks/results/quality.json``.
    """

    factors: int = Field(128, ge=1, le=1024)
    """Latent dimensions per user and item (plus one item bias)."""
    learning_rate: float = Field(0.05, gt=0.0, le=10.0, allow_inf_nan=False)
    """SGD step size, applied per sample (a batch's updates are summed, not averaged)."""
    regularization: float = Field(0.01, ge=0.0, le=10.0, allow_inf_nan=False)
    """L2 penalty on the user, positive and negative item vectors and biases of each sample."""
    epochs: int = Field(100, ge=1, le=10_000)
    """Passes over the stored interactions (at most, with early stopping)."""
    batch_size: int = Field(4096, ge=1, le=2**20)
    """Triples per vectorised update; larger is faster per epoch but staler within it."""
    patience: int = Field(5, ge=1, le=10_000)
    """With ``validation`` data: epochs without a better nDCG@10 before training stops."""


class BprRecommender(Recommender):
    """Scores are ``user_factors_ @ item_factors_.T + item_biases_``.

    After :meth:`fit`: ``user_factors_`` (n_users x factors), ``item_factors_`` (n_items x
    factors), ``item_biases_`` (n_items), ``item_popularity_``, ``training_loss_`` (mean BPR loss
    per epoch) and, when fit had ``validation``, ``validation_ndcg_`` (per epoch) and
    ``best_epoch_`` (the epoch whose factors were kept).
    """

    name: ClassVar[str] = "bpr"
    summary: ClassVar[str] = "BPR matrix factorization (pairwise ranking loss, SGD); early stopping on validation nDCG"
    config_class: ClassVar[type[ModelConfig]] = BprConfig
    config: BprConfig

    input_values: ClassVar[str] = "binary"
    uses_validation: ClassVar[bool] = True
    user_factors_: np.ndarray | None = None
    item_factors_: np.ndarray | None = None
    item_biases_: np.ndarray | None = None
    validation_ndcg_: list[float] = []  # replaced, never appended to, by each fit
    best_epoch_: int | None = None

    def _fit(
        self, train: sp.csr_matrix, *, validation: sp.csr_matrix | None, callback: IterationCallback | None, **unused: Any
    ) -> None:
        """Learn factors from the interactions of ``train``. ``validation`` (held-out positives)
        turns on early stopping on nDCG@10; without it all ``epochs`` run. The loss reported per
        epoch is the mean of ``-ln sigmoid(x_uij)`` over its triples, each taken before its batch's
        update."""
        cfg = self.config
        n_users, n_items = train.shape
        rng = seeding.rng(cfg.seed)
        factors = (
            rng.normal(0.0, _INIT_STD, (n_users, cfg.factors)).astype(np.float32),
            rng.normal(0.0, _INIT_STD, (n_items, cfg.factors)).astype(np.float32),
            np.zeros(n_items, dtype=np.float32),
        )
        self.user_factors_, self.item_factors_, self.item_biases_ = factors
        sampler = _TripleSampler(train)
        held_out = None if validation is None else ValidationSet.build(train, validation, n_users, rng)
        history = train_epochs(
            lambda epoch: _sgd_epoch(sampler, *factors, cfg, rng),
            None if held_out is None else (lambda: validation_ndcg(self._score_block, held_out)),
            lambda: tuple(array.copy() for array in factors),
            self._keep_factors,
            epochs=cfg.epochs,
            patience=cfg.patience if held_out is not None else 0,
            model_name=self.name,
            callback=callback,
        )
        self.training_loss_ = history.losses
        self.validation_ndcg_ = history.validation_ndcg
        self.best_epoch_ = history.best_epoch if held_out is not None else None

    def _keep_factors(self, factors: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        self.user_factors_, self.item_factors_, self.item_biases_ = factors

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_idx] @ self.item_factors_.T + self.item_biases_

    def _dot_factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return self.user_factors_, self.item_factors_, self.item_biases_

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors_": self.user_factors_,
            "item_factors_": self.item_factors_,
            "item_biases_": self.item_biases_,
            "validation_ndcg_": np.asarray(self.validation_ndcg_, dtype=np.float64),
            "best_epoch_": np.asarray(-1 if self.best_epoch_ is None else self.best_epoch_, dtype=np.int64),
        }

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors_ = state["user_factors_"]
        self.item_factors_ = state["item_factors_"]
        self.item_biases_ = state["item_biases_"]
        self.validation_ndcg_ = [float(v) for v in state.get("validation_ndcg_", [])]
        best_epoch = int(state.get("best_epoch_", -1))
        self.best_epoch_ = None if best_epoch < 0 else best_epoch


class _TripleSampler:
    """Seeded (user, positive, negative) triples from a canonical binary CSR matrix."""

    def __init__(self, user_items: sp.csr_matrix) -> None:
        self.n_items = user_items.shape[1]
        self.users = np.repeat(np.arange(user_items.shape[0], dtype=np.int64), np.diff(user_items.indptr))
        self.items = user_items.indices.astype(np.int64)
        # Row-major keys of the positives are sorted (canonical CSR): membership is a searchsorted.
        self.keys = self.users * self.n_items + self.items

    def __len__(self) -> int:
        return len(self.items)

    def negatives(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One uniform non-positive item per user, redrawn up to ``_NEGATIVE_REDRAWS`` times."""
        negatives = rng.integers(0, self.n_items, len(users))
        redraw = np.arange(len(users))
        for _ in range(_NEGATIVE_REDRAWS):
            redraw = redraw[self._is_positive(users[redraw], negatives[redraw])]
            if len(redraw) == 0:
                break
            negatives[redraw] = rng.integers(0, self.n_items, len(redraw))
        return negatives

    def _is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        query = users * self.n_items + items
        pos = np.minimum(np.searchsorted(self.keys, query), len(self.keys) - 1)
        return self.keys[pos] == query


def _sgd_epoch(
    sampler: _TripleSampler,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    item_biases: np.ndarray,
    cfg: BprConfig,
    rng: np.random.Generator,
) -> float:
    """One pass over every positive in random order, updating the arrays in place; returns the mean loss.

    Stable for every value the config accepts: a row's summed gradient step in a batch is clipped
    to norm ``_MAX_STEP`` (so factors grow at most linearly, whatever ``learning_rate``), and the
    L2 penalty is applied as its proximal step, ``row / (1 + learning_rate * regularization * n)``
    for a row touched n times, which shrinks and never overshoots (the explicit ``- lr * reg * row``
    flips and grows rows once ``lr * reg * n > 2``). Both equal plain SGD to first order for small steps.
    """
    order = rng.permutation(len(sampler))
    lr = np.float32(cfg.learning_rate)
    decay = cfg.learning_rate * cfg.regularization
    total = 0.0
    for start in range(0, len(order), cfg.batch_size):
        batch = order[start : start + cfg.batch_size]
        users, positives = sampler.users[batch], sampler.items[batch]
        negatives = sampler.negatives(users, rng)
        p_u, q_i, q_j = user_factors[users], item_factors[positives], item_factors[negatives]
        difference = q_i - q_j
        x = np.einsum("bf,bf->b", p_u, difference) + item_biases[positives] - item_biases[negatives]
        total += float(np.logaddexp(0.0, -x, dtype=np.float64).sum())
        # d ln sigmoid(x) / dx = sigmoid(-x); clipped so exp never overflows.
        weight = (lr / (1.0 + np.exp(np.clip(x, -30.0, 30.0)))).astype(np.float32)[:, None]
        # Positive and negative items in one update: factor steps with the bias step as a last column.
        item_step = np.empty((2 * len(batch), cfg.factors + 1), dtype=np.float32)
        item_step[: len(batch), :-1] = weight * p_u
        item_step[len(batch) :, :-1] = -item_step[: len(batch), :-1]
        item_step[: len(batch), -1] = weight[:, 0]
        item_step[len(batch) :, -1] = -weight[:, 0]
        rows, step, shrink = _row_steps(users, weight * difference, decay)
        user_factors[rows] = (user_factors[rows] + step) * shrink
        rows, step, shrink = _row_steps(np.concatenate([positives, negatives]), item_step, decay)
        item_factors[rows] = (item_factors[rows] + step[:, :-1]) * shrink
        item_biases[rows] = (item_biases[rows] + step[:, -1]) * shrink[:, 0]
    return total / len(order)


def _row_steps(rows: np.ndarray, steps: np.ndarray, decay: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct ``rows``, each one's summed ``steps`` clipped to norm ``_MAX_STEP``, and its proximal
    L2 shrink ``1 / (1 + decay * times touched)`` (a column).

    Summing is one sparse product, several times faster than ``np.add.at`` on 2-D updates, and
    touches only the rows present.
    """
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    first = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    indptr = np.r_[first, len(rows)]
    summing = sp.csr_matrix((np.ones(len(rows), dtype=steps.dtype), order, indptr), shape=(len(first), len(rows)))
    summed = summing @ steps
    norms = np.linalg.norm(summed, axis=1, keepdims=True)
    summed *= np.minimum(1.0, _MAX_STEP / np.maximum(norms, 1e-30)).astype(np.float32)
    shrink = (1.0 / (1.0 + decay * np.diff(indptr))).astype(np.float32)[:, None]
    return sorted_rows[first], summed, shrink
