"""Neural collaborative filtering as a two-tower model, trained on sampled negatives.

Each user and item has an embedding; optional MLP towers map them into a shared space and the
score is the dot product plus an item bias (:mod:`pipelines.models.deep.ncf_module`). Training
pairs every observed (user, item) with ``n_negatives`` items drawn uniformly among those the user
has not interacted with, and minimises a BPR, BCE or sampled-softmax loss over mini-batches.

Fitted models score with NumPy from the tower outputs (no torch needed to serve). A new user
is folded in by ridge regression of their seed row on the item vectors (see
:meth:`NcfRecommender.score_new_users`).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from pipelines import seeding
from pipelines.models.base import IterationCallback, ModelConfig, Recommender, item_popularity
from pipelines.models.deep.config import DeepModelConfig
from pipelines.models.deep.data import interaction_matrix, split_for_early_stopping, validation_matrix

log = logging.getLogger(__name__)

#: Rounds of redrawing negatives that hit one of the user's positives (the rest are kept).
_RESAMPLE_ROUNDS = 4
_STATE_PREFIX = "module."


class NcfConfig(DeepModelConfig):
    """Hyperparameters of :class:`NcfRecommender` (then the shared loop's, then runtime options).

    Defaults were tuned on MovieLens latest-small (per-user random 75/25 split, seed 42, nDCG@10
    with training items excluded): see ``tests/models/test_model_ncf.py`` for the measured value.
    """

    embedding_dim: int = Field(64, ge=1, le=4_096)
    """Width of the user and item embeddings (and of the towers' input)."""
    tower_layers: tuple[Annotated[int, Field(ge=1, le=8_192)], ...] = Field((), max_length=8)
    """Output widths of each tower's linear layers (ReLU between them); empty: no towers, the
    embeddings are compared directly (matrix factorization), which ranked best on MovieLens."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0, allow_inf_nan=False)
    """Dropout between tower layers (unused without at least two layers)."""
    item_bias: bool = True
    """Learn a per-item bias added to every score (captures popularity)."""
    loss: Literal["bpr", "bce", "softmax"] = "bpr"
    """``bpr``: -log sigmoid(positive - negative), averaged over the negatives; ``bce``: logistic
    loss of the positive as 1 and of the negatives (averaged) as 0; ``softmax``: cross-entropy of
    the positive against its sampled negatives."""
    n_negatives: int = Field(4, ge=1, le=1_000)
    """Negative items drawn per observed interaction and epoch."""
    l2_regularization: float = Field(1e-4, ge=0.0, le=100.0, allow_inf_nan=False)
    """Penalty on the squared norms of the embeddings a batch uses (per example)."""
    init_std: float = Field(0.1, gt=0.0, le=10.0, allow_inf_nan=False)
    """Standard deviation of the normal initial embeddings."""
    fold_in_regularization: float = Field(1.0, gt=0.0, le=1e6, allow_inf_nan=False)
    """Ridge penalty when folding a new user in from seed items (:meth:`NcfRecommender.score_new_users`)."""

    epochs: int = Field(50, ge=1, le=10_000)
    batch_size: int = Field(1_024, ge=1, le=1_000_000)
    learning_rate: float = Field(5e-3, gt=0.0, le=10.0, allow_inf_nan=False)


class NcfRecommender(Recommender):
    """Two-tower neural collaborative filtering; scores are ``user_vectors_ @ item_vectors_.T + item_bias_``.

    After :meth:`fit`: ``user_vectors_`` (n_users, d) and ``item_vectors_`` (n_items, d) (tower
    outputs), ``item_bias_`` (n_items,), ``item_popularity_`` (unknown-user fallback),
    ``training_loss_`` and ``validation_ndcg_`` (one value per epoch run), ``best_epoch_`` (the
    0-based epoch kept) and ``module_state_`` (the network's state_dict as NumPy arrays).
    """

    name: ClassVar[str] = "ncf"
    summary: ClassVar[str] = "Neural collaborative filtering (two towers, sampled negatives, PyTorch); fold-in for new users"
    config_class: ClassVar[type[ModelConfig]] = NcfConfig
    config: NcfConfig

    def __init__(self, config: NcfConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.user_vectors_: np.ndarray | None = None
        self.item_vectors_: np.ndarray | None = None
        self.item_bias_: np.ndarray | None = None
        self.item_popularity_: np.ndarray | None = None
        self.validation_ndcg_: list[float] = []
        self.best_epoch_: int = -1
        self.module_state_: dict[str, np.ndarray] = {}

    def fit(
        self,
        train: sp.csr_matrix,
        *,
        item_features: sp.csr_matrix | None = None,
        validation: sp.csr_matrix | None = None,
        callback: IterationCallback | None = None,
    ) -> "NcfRecommender":
        """Train on ``train`` (users x items; positive values are interactions); returns self.

        ``validation`` (same shape) drives early stopping; without it ``validation_fraction``
        of each user's items is held out for that. ``callback(epoch, loss, {"ndcg@10": v})``
        follows each epoch. ``item_features`` is accepted for the shared interface and unused.
        Raises TypeError for non-sparse input, ValueError for an empty or non-finite ``train``
        or a ``validation`` of another shape.
        """
        import torch

        from pipelines.models.deep import training
        from pipelines.models.deep.ncf_module import NcfModule

        cfg = self.config
        matrix = interaction_matrix(train)
        checked_validation = None if validation is None else validation_matrix(validation, matrix.shape)
        n_users, n_items = matrix.shape
        split_rng, sample_rng = seeding.rng(cfg.seed).spawn(2)
        fit_matrix, validation_set = split_for_early_stopping(
            matrix, checked_validation, cfg.validation_fraction, cfg.validation_users, split_rng
        )
        sampler = _NegativeSampler(fit_matrix, cfg.n_negatives, sample_rng)

        with training.torch_session(cfg) as device:
            module = NcfModule(cfg, n_users, n_items).to(device)
            optimizer = torch.optim.Adam(module.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

            def run_epoch(epoch: int) -> float:
                total = 0.0
                for users, positives, negatives in sampler.batches(cfg.batch_size):
                    loss = module(
                        torch.from_numpy(users).to(device),
                        torch.from_numpy(positives).to(device),
                        torch.from_numpy(negatives).to(device),
                    )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(users)
                return total / fit_matrix.nnz

            def score_users(users: np.ndarray) -> torch.Tensor:
                return module.score_all(torch.as_tensor(users, dtype=torch.long, device=device))

            history = training.train_epochs(
                module, run_epoch, score_users, validation_set, cfg,
                model_name=self.name, model_args={"n_users": n_users, "n_items": n_items}, callback=callback,
            )
            with torch.no_grad():
                all_users = torch.arange(n_users, device=device)
                self.user_vectors_ = module.user_vectors(all_users).cpu().numpy().astype(np.float32)
                self.item_vectors_ = module.item_vectors().cpu().numpy().astype(np.float32)
                self.item_bias_ = module.item_biases().cpu().numpy().astype(np.float32)
            self.module_state_ = {name: t.detach().cpu().numpy() for name, t in module.state_dict().items()}

        self.training_loss_ = history.losses
        self.validation_ndcg_ = history.validation_ndcg
        self.best_epoch_ = history.best_epoch
        self.item_popularity_ = item_popularity(matrix)
        self.n_users, self.n_items = n_users, n_items
        return self

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_vectors_[user_idx] @ self.item_vectors_.T + self.item_bias_

    def score_new_users(self, seen: sp.csr_matrix) -> np.ndarray:
        """Scores for new users from their seed items (rows of ``seen``, n_new x n_items).

        Fold-in by ridge regression in the towers' output space: the user vector ``u`` solves
        ``min ||x - Q u||^2 + lambda ||u||^2`` for the binary seed row ``x`` and item vectors
        ``Q`` (lambda = ``fold_in_regularization``), the same least-squares fold-in ALS uses; the
        scores are ``Q u + item_bias_``. Users without a positive seed item get popularity.
        Raises ValueError when ``seen`` has another number of items.
        """
        self._check_fitted()
        seeds = _seed_rows(seen, self.n_items)
        vectors = self.item_vectors_.astype(np.float64)
        gram = vectors.T @ vectors + self.config.fold_in_regularization * np.eye(vectors.shape[1])
        users = np.linalg.solve(gram, (seeds @ vectors).T).T
        scores = (users @ vectors.T).astype(np.float32) + self.item_bias_
        empty = np.diff(seeds.indptr) == 0
        scores[empty] = self._unknown_user_scores()
        return scores

    def _state(self) -> dict[str, np.ndarray]:
        state = {
            "user_vectors_": self.user_vectors_,
            "item_vectors_": self.item_vectors_,
            "item_bias_": self.item_bias_,
            "validation_ndcg_": np.asarray(self.validation_ndcg_, dtype=np.float64),
            "best_epoch_": np.asarray(self.best_epoch_, dtype=np.int64),
        }
        state.update({_STATE_PREFIX + name: array for name, array in self.module_state_.items()})
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_vectors_ = state["user_vectors_"]
        self.item_vectors_ = state["item_vectors_"]
        self.item_bias_ = state["item_bias_"]
        self.validation_ndcg_ = state["validation_ndcg_"].tolist()
        self.best_epoch_ = int(state["best_epoch_"])
        self.module_state_ = {k[len(_STATE_PREFIX):]: v for k, v in state.items() if k.startswith(_STATE_PREFIX)}


def _seed_rows(seen: Any, n_items: int) -> sp.csr_matrix:
    """New users' seed rows as binary float64 CSR; TypeError/ValueError on a bad ``seen``."""
    if not sp.issparse(seen):
        raise TypeError(f"seen must be a SciPy sparse matrix (new users x items), got {type(seen).__name__}")
    if seen.shape[1] != n_items:
        raise ValueError(f"seen has {seen.shape[1]} item columns but the model was fit on {n_items} items")
    rows = sp.csr_matrix(seen, dtype=np.float64, copy=True)
    rows.data = (np.nan_to_num(rows.data) > 0).astype(np.float64)
    rows.eliminate_zeros()
    return rows


class _NegativeSampler:
    """Shuffled mini-batches of (user, positive item, negative items) from a binary CSR.

    Negatives are uniform over all items; a draw that hits one of the user's positives is
    redrawn (a few rounds, so a user who has seen nearly everything cannot stall an epoch).
    """

    def __init__(self, matrix: sp.csr_matrix, n_negatives: int, rng: np.random.Generator) -> None:
        coo = matrix.tocoo()
        self.users = coo.row.astype(np.int64)
        self.items = coo.col.astype(np.int64)
        self.n_items = matrix.shape[1]
        self.n_negatives = n_negatives
        self.rng = rng
        self.positive_keys = np.sort(self.users * self.n_items + self.items)

    def _is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        pos = np.minimum(np.searchsorted(self.positive_keys, keys), len(self.positive_keys) - 1)
        return self.positive_keys[pos] == keys

    def batches(self, batch_size: int):
        """Yield (users, positives, negatives) int64 arrays for one epoch in a fresh random order."""
        order = self.rng.permutation(len(self.users))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            users, positives = self.users[chosen], self.items[chosen]
            negatives = self.rng.integers(0, self.n_items, size=(len(chosen), self.n_negatives))
            for _ in range(_RESAMPLE_ROUNDS):
                clash = self._is_positive(users[:, None], negatives)
                if not clash.any():
                    break
                negatives[clash] = self.rng.integers(0, self.n_items, size=int(clash.sum()))
            yield users, positives, negatives
