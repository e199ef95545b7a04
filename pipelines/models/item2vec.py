"""item2vec (Barkan and Koenigstein 2016): skip-gram with negative sampling over each user's items.

Each user's training items, in time order, form a "sentence"; gensim's word2vec (skip-gram,
negative sampling, one worker so a seed gives the same vectors every run) learns an input and
a context vector per item. A user is the mean input vector of their most recent items; items
are scored by their similarity to it:

- ``context`` (default): the dot product with each item's context vector, skip-gram's own
  estimate of how likely the item appears around the user's items;
- ``cosine``: the cosine with each item's input vector (the classic item2vec similarity).

With uniform negative sampling (``ns_exponent`` 0) the context vectors carry each item's
popularity, which is why ``context`` scoring ranks far better than ``cosine`` on MovieLens (see
:class:`Item2VecConfig`). gensim is imported inside :meth:`Item2VecRecommender.fit` only.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from pipelines.features.order import check_interaction_order, time_ordered_sequences
from pipelines.models.base import IterationCallback, ModelConfig, Recommender
from pipelines.models.sparse_inputs import check_seen

log = logging.getLogger(__name__)

# gensim truncates longer sentences (its MAX_WORDS_IN_BATCH): longer histories are cut in chunks.
_MAX_SENTENCE = 10_000


class Item2VecConfig(ModelConfig):
    """Hyperparameters of :class:`Item2VecRecommender`.
    The defaults' measured quality: ``benchmarks/results/quality.json``.
    """

    vector_size: int = Field(64, ge=2, le=1024)
    """Dimensions of each item vector."""
    window: int = Field(10, ge=1, le=10_000)
    """Items on each side of an item that count as its context (a large window: the whole set)."""
    negative: int = Field(5, ge=1, le=100)
    """Negative samples drawn per positive pair."""
    ns_exponent: float = Field(0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    """Negatives are drawn with probability ~ count ** ns_exponent (word2vec: 0.75; 0: uniform)."""
    epochs: int = Field(20, ge=1, le=1000)
    """Passes over all sentences."""
    learning_rate: float = Field(0.05, gt=0.0, le=1.0, allow_inf_nan=False)
    """Initial learning rate (gensim ``alpha``); it decays linearly to ``min_learning_rate``."""
    min_learning_rate: float = Field(0.0001, gt=0.0, le=1.0, allow_inf_nan=False)
    """Final learning rate (gensim ``min_alpha``)."""
    min_count: int = Field(1, ge=1)
    """Items with fewer training interactions get no vector (they rank last)."""
    subsample: float = Field(1e-3, ge=0.0, le=1.0, allow_inf_nan=False)
    """Down-sampling threshold of frequent items (gensim ``sample``; 0 = off). It applies to
    items above this share of all interactions: on a small catalog that is every item, and most
    of the data is dropped, so use 0 there."""
    recency_window: int = Field(0, ge=0)
    """The user vector averages the user's last ``recency_window`` items (0 = all of them)."""
    similarity: Literal["context", "cosine"] = "context"
    """How items are scored against the user vector (see the module docstring)."""


class Item2VecRecommender(Recommender):
    """Skip-gram item vectors; a user is the mean vector of their recent items.

    After :meth:`fit`: ``item_vectors_`` (input vectors, n_items x vector_size; zero rows for
    items without a vector), ``context_vectors_`` (output vectors, same shape), ``has_vector_``
    (bool per item), ``user_vectors_`` (n_users x vector_size) and ``item_popularity_``.
    """

    name: ClassVar[str] = "item2vec"
    summary: ClassVar[str] = "Skip-gram (word2vec) item embeddings over each user's time-ordered items"
    config_class: ClassVar[type[ModelConfig]] = Item2VecConfig
    uses_interaction_order: ClassVar[bool] = True
    config: Item2VecConfig

    item_vectors_: np.ndarray | None = None
    context_vectors_: np.ndarray | None = None
    has_vector_: np.ndarray | None = None
    user_vectors_: np.ndarray | None = None

    def _fit(
        self,
        train: sp.csr_matrix,
        *,
        callback: IterationCallback | None,
        interaction_order: sp.csr_matrix | None = None,
        **unused: Any,
    ) -> None:
        """Learn item vectors from each user's items in ``interaction_order`` (without it each
        user's items are shuffled with the seed and a warning says so). ``callback(epoch, loss)``
        follows each epoch with gensim's running loss for it. Raises ValueError for an order that
        does not match ``train`` or a ``min_count`` no item reaches."""
        from gensim.models import Word2Vec
        from gensim.models.callbacks import CallbackAny2Vec

        cfg = self.config
        matrix = train
        sequences = time_ordered_sequences(matrix, interaction_order, cfg.seed, self.name)
        sentences = [chunk for seq in sequences for chunk in _chunks(seq.tolist(), _MAX_SENTENCE) if chunk]
        counts = np.diff(matrix.tocsc().indptr)
        if counts.max() < cfg.min_count:
            raise ValueError(
                f"no item has min_count={cfg.min_count} interactions (the most has {counts.max()}); lower min_count"
            )

        losses: list[float] = []

        class _EpochEnd(CallbackAny2Vec):  # gensim reports the loss cumulated over epochs
            def __init__(self) -> None:
                self.previous = 0.0

            def on_epoch_end(self, model: Any) -> None:
                total = float(model.get_latest_training_loss())
                losses.append(total - self.previous)
                self.previous = total
                if callback is not None:
                    callback(len(losses) - 1, losses[-1])

        w2v = Word2Vec(
            sentences=sentences,
            vector_size=cfg.vector_size,
            window=cfg.window,
            negative=cfg.negative,
            ns_exponent=cfg.ns_exponent,
            epochs=cfg.epochs,
            alpha=cfg.learning_rate,
            min_alpha=min(cfg.min_learning_rate, cfg.learning_rate),
            min_count=cfg.min_count,
            sample=cfg.subsample,
            sg=1,
            hs=0,
            workers=1,  # one thread: gensim is only deterministic single-threaded
            seed=cfg.seed,
            compute_loss=True,
            callbacks=[_EpochEnd()],
        )
        n_items = matrix.shape[1]
        keys = np.asarray(w2v.wv.index_to_key, dtype=np.int64)
        self.item_vectors_ = np.zeros((n_items, cfg.vector_size), dtype=np.float32)
        self.context_vectors_ = np.zeros((n_items, cfg.vector_size), dtype=np.float32)
        self.item_vectors_[keys] = w2v.wv.vectors
        self.context_vectors_[keys] = w2v.syn1neg
        self.has_vector_ = np.zeros(n_items, dtype=bool)
        self.has_vector_[keys] = True
        self.user_vectors_ = np.stack([self._user_vector(seq) for seq in sequences])
        self.training_loss_ = losses
        log.debug("item2vec: %d items with vectors of %d, %d sentences", len(keys), n_items, len(sentences))

    def score_new_users(
        self, seen: sp.csr_matrix, *, interaction_order: sp.csr_matrix | None = None
    ) -> np.ndarray:
        """Fold-in: a new user is the mean vector of their seed items (the recent ones when
        ``interaction_order`` ranks them; otherwise all of them)."""
        self._check_fitted()
        matrix = check_seen(seen, self.n_items)
        matrix.eliminate_zeros()
        matrix.sort_indices()
        order = None if interaction_order is None else check_interaction_order(interaction_order, matrix)
        vectors = np.zeros((matrix.shape[0], self.config.vector_size), dtype=np.float32)
        for row in range(matrix.shape[0]):
            lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
            items = matrix.indices[lo:hi].astype(np.int64)
            if order is not None:
                items = items[np.argsort(order.data[lo:hi], kind="stable")]
            vectors[row] = self._user_vector(items)
        return self._scores(vectors)

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return self._scores(self.user_vectors_[user_idx])

    def _user_vector(self, items: np.ndarray) -> np.ndarray:
        """Mean input vector of the last ``recency_window`` items that have a vector."""
        items = items[self.has_vector_[items]]
        if self.config.recency_window:
            items = items[-self.config.recency_window :]
        if len(items) == 0:
            return np.zeros(self.config.vector_size, dtype=np.float32)
        vectors = self.item_vectors_[items]
        if self.config.similarity == "cosine":
            vectors = _unit_rows(vectors)
        return vectors.mean(axis=0).astype(np.float32)

    def _scores(self, user_vectors: np.ndarray) -> np.ndarray:
        if self.config.similarity == "cosine":
            scores = _unit_rows(user_vectors) @ _unit_rows(self.item_vectors_).T
        else:
            scores = user_vectors @ self.context_vectors_.T
        scores = scores.astype(np.float32)
        if (~self.has_vector_).any() and self.has_vector_.any():
            # Items without a vector rank after every item with one, still finite.
            scores[:, ~self.has_vector_] = scores[:, self.has_vector_].min() - 1.0
        empty = ~user_vectors.any(axis=1)
        if empty.any():  # no item with a vector: nothing to go on, give the popular items
            scores[empty] = self._unknown_user_scores()
        return scores

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "item_vectors_": self.item_vectors_,
            "context_vectors_": self.context_vectors_,
            "has_vector_": self.has_vector_,
            "user_vectors_": self.user_vectors_,
        }

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        for key in ("item_vectors_", "context_vectors_", "has_vector_", "user_vectors_"):
            setattr(self, key, state[key])


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)
