"""Neural collaborative filtering as a two-tower model, trained on sampled negatives.

A user is represented by a learnt id embedding, the mean of learnt history embeddings of the
items they interacted with, or both; each item by an embedding. Optional MLP towers map both
into one space; the score is their dot product plus an item bias
(:mod:`pipelines.models.deep.ncf_module`). Training pairs every observed (user, item) with
uniformly drawn negative items and minimises a BPR, BCE or sampled-softmax loss over
mini-batches, the item predicted left out of its own history.

Fitted models score with NumPy from the tower outputs (no torch needed to serve). A new user
is folded in through the history tower from their seed items (or, for id-only users, by ridge
regression on the item vectors; see :meth:`NcfRecommender.score_new_users`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from pipelines import seeding
from pipelines.models.base import IterationCallback, ModelConfig
from pipelines.models.deep.base import TorchRecommender
from pipelines.models.deep.config import NcfConfig
from pipelines.models.validation import split_for_early_stopping
from pipelines.models.warm_start import WarmStart

#: Rounds of redrawing negatives that hit one of the user's positives (the rest are kept).
_RESAMPLE_ROUNDS = 4


class NcfRecommender(TorchRecommender):
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

    user_vectors_: np.ndarray | None = None
    item_vectors_: np.ndarray | None = None
    item_bias_: np.ndarray | None = None
    warm_start_fields: ClassVar[tuple[str, ...]] = ("embedding_dim", "user_input", "tower_layers", "item_bias")
    warm_start_rows: ClassVar[dict[str, tuple[str, int, int]]] = {
        "user_embedding.weight": ("user", 0, 0), "history_embedding.weight": ("item", 0, 0),
        "item_embedding.weight": ("item", 0, 0), "item_bias.weight": ("item", 0, 0),
    }

    def _fit(
        self, train: sp.csr_matrix, *, validation: sp.csr_matrix | None, callback: IterationCallback | None,
        warm_start: WarmStart | None = None, **unused: Any,
    ) -> None:
        """Train on the interactions of ``train``. ``validation`` drives early stopping; without it
        ``validation_fraction`` of each user's items is held out for that."""
        import torch

        from pipelines.models.deep import training
        from pipelines.models.deep.ncf_module import NcfModule

        cfg = self.config
        matrix = train
        n_users, n_items = matrix.shape
        split_rng, sample_rng = seeding.rng(cfg.seed).spawn(2)
        fit_matrix, validation_set = split_for_early_stopping(
            matrix, validation, cfg.validation_fraction, cfg.validation_users, split_rng,
            eligible=None if warm_start is None else warm_start.unseen(matrix),
        )
        sampler = _NegativeSampler(fit_matrix, cfg.n_negatives, sample_rng, shared=cfg.loss == "softmax")

        with training.torch_session(cfg) as device:
            module = NcfModule(cfg, n_users, n_items, item_counts=np.diff(fit_matrix.tocsc().indptr)).to(device)
            self._start_from(module, warm_start)
            optimizers = module.optimizers()

            def history_of(users: np.ndarray, source: sp.csr_matrix) -> Any:
                return _history(users, source, device) if module.uses_history else None

            def run_epoch(epoch: int) -> float:
                total = 0.0
                for users, positives, negatives in sampler.batches(cfg.batch_size):
                    loss = module(
                        torch.from_numpy(users).to(device),
                        torch.from_numpy(positives).to(device),
                        torch.from_numpy(negatives).to(device),
                        history_of(users, fit_matrix),
                    )
                    for optimizer in optimizers:
                        optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    for optimizer in optimizers:
                        optimizer.step()
                    total += float(loss.detach()) * len(users)
                return total / fit_matrix.nnz

            def score_users(users: np.ndarray) -> torch.Tensor:
                ids = torch.as_tensor(users, dtype=torch.long, device=device)
                return module.score_all(ids, history_of(users, fit_matrix))

            outcome = training.train_epochs(
                module, run_epoch, score_users, validation_set, cfg,
                model_name=self.name, model_args={"n_users": n_users, "n_items": n_items}, callback=callback,
            )
            with torch.no_grad():
                # Known users' vectors see their whole training row, held-out items included.
                all_users = np.arange(n_users)
                vectors = module.user_vectors(torch.from_numpy(all_users).to(device), history_of(all_users, matrix))
                self.user_vectors_ = vectors.cpu().numpy().astype(np.float32)
                self.item_vectors_ = module.item_vectors().cpu().numpy().astype(np.float32)
                self.item_bias_ = module.item_biases().cpu().numpy().astype(np.float32)
            self._keep(outcome, module)

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_vectors_[user_idx] @ self.item_vectors_.T + self.item_bias_

    def score_new_users(self, seen: sp.csr_matrix) -> np.ndarray:
        """Scores for new users from their seed items (rows of ``seen``, n_new x n_items).

        With a history input (``user_input`` "history" or "id+history"), the user tower runs on
        the mean history embedding of the seed items, exactly as for a known user (whose id
        embedding, if any, a new user lacks: it counts as zero, the prior mean). With
        ``user_input="id"``, the user vector ``u`` is fitted by ridge regression in the towers'
        output space: ``min ||x - Q u||^2 + lambda ||u||^2`` for the binary seed row ``x`` and
        item vectors ``Q`` (lambda = ``fold_in_regularization``), ALS's least-squares fold-in.
        Scores are ``u . Q + item_bias_``; users without a positive seed item get popularity.
        Raises as :meth:`~pipelines.models.deep.base.TorchRecommender._seed_rows` does.
        """
        self._check_fitted()
        seeds = self._seed_rows(seen, np.float64)
        history = self.module_state_.get("history_embedding.weight")
        if history is not None:
            counts = np.maximum(np.diff(seeds.indptr), 1).astype(np.float32)
            users = self._user_tower(np.asarray(seeds @ history, dtype=np.float32) / counts[:, None])
        else:
            vectors = self.item_vectors_.astype(np.float64)
            gram = vectors.T @ vectors + self.config.fold_in_regularization * np.eye(vectors.shape[1])
            users = np.linalg.solve(gram, np.asarray(seeds @ vectors).T).T
        scores = (users @ self.item_vectors_.T).astype(np.float32) + self.item_bias_
        scores[np.diff(seeds.indptr) == 0] = self._unknown_user_scores()
        return scores

    def _user_tower(self, inputs: np.ndarray) -> np.ndarray:
        """The user tower in NumPy (eval mode: linear layers with ReLU between, no dropout)."""
        layers = sorted(
            int(key.split(".")[1]) for key in self.module_state_ if key.startswith("user_tower.") and key.endswith(".weight")
        )
        h = inputs
        for position, index in enumerate(layers):
            if position > 0:
                h = np.maximum(h, 0.0)
            h = h @ self.module_state_[f"user_tower.{index}.weight"].T + self.module_state_[f"user_tower.{index}.bias"]
        return h

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_vectors_": self.user_vectors_,
            "item_vectors_": self.item_vectors_,
            "item_bias_": self.item_bias_,
            **self._training_state(),
        }

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_vectors_ = state["user_vectors_"]
        self.item_vectors_ = state["item_vectors_"]
        self.item_bias_ = state["item_bias_"]
        self._load_training_state(state)


def _history(users: np.ndarray, source: sp.csr_matrix, device: Any) -> Any:
    """The :class:`~pipelines.models.deep.ncf_module.History` of ``users`` (rows of ``source``)."""
    import torch

    from pipelines.models.deep.ncf_module import History

    distinct, inverse = np.unique(users, return_inverse=True)
    rows = source[distinct]
    if not rows.has_sorted_indices:  # row-major sorted cells are what a coalesced tensor is
        rows = rows.sorted_indices()
    coo = rows.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    histories = torch.sparse_coo_tensor(
        indices, torch.ones(coo.nnz), rows.shape, is_coalesced=True, check_invariants=False
    )
    return History(
        histories.to(device),
        torch.from_numpy(np.diff(rows.indptr).astype(np.float32)).to(device),
        torch.from_numpy(inverse.astype(np.int64)).to(device),
    )


class _NegativeSampler:
    """Shuffled mini-batches of (user, positive item, negative items) from a binary CSR.

    Negatives are uniform over all items. Per-example negatives (``shared`` False) that hit
    one of the user's positives are redrawn (a few rounds, so a user who has seen nearly
    everything cannot stall an epoch); ``shared`` negatives are one draw for the whole batch,
    or every item when ``n_negatives`` covers the catalogue.
    """

    def __init__(self, matrix: sp.csr_matrix, n_negatives: int, rng: np.random.Generator, shared: bool = False) -> None:
        self.shared = shared
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
            if self.shared:
                if self.n_negatives >= self.n_items:  # a small catalogue: the exact softmax
                    yield users, positives, np.arange(self.n_items)
                else:
                    yield users, positives, self.rng.integers(0, self.n_items, size=self.n_negatives)
                continue
            negatives = self.rng.integers(0, self.n_items, size=(len(chosen), self.n_negatives))
            for _ in range(_RESAMPLE_ROUNDS):
                clash = self._is_positive(users[:, None], negatives)
                if not clash.any():
                    break
                negatives[clash] = self.rng.integers(0, self.n_items, size=int(clash.sum()))
            yield users, positives, negatives
