"""GRU4Rec-style session model: a GRU reads each user's items in time order, predicts the next.

Training cuts every user's time-ordered items (from ``interaction_order``) into windows of
``max_length`` next-item transitions and minimises the next-item cross-entropy, over every item
(full softmax) for catalogs up to 5,000 items and over the target plus shared sampled negatives
otherwise (``loss="auto"``; the full softmax costs ~8x more per step on MovieLens' 9.7k items).
A user is scored from their last ``history_length`` items: the next-item distribution after
the last one (``scoring="last"``) or the average of those after each one (``"mean"``, the
default; see :class:`SequenceConfig`). Early stopping watches nDCG@10 on ``validation`` or,
without one, on a seeded share of users' latest item, held out of training.

torch is imported inside fit/load (through :mod:`pipelines.compute.torch_device`); the network
lives in :mod:`pipelines.models.sequence_net`.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, field_validator

from pipelines import seeding
from pipelines.features.order import check_interaction_order, time_ordered_sequences
from pipelines.models.base import IterationCallback, ModelConfig, Recommender, _mask_seen, item_popularity
from pipelines.models.sparse_inputs import check_seen, check_train

log = logging.getLogger(__name__)

FULL_SOFTMAX_MAX_ITEMS = 5_000  # "auto" switches to sampled softmax above this catalog size
_VALIDATION_K = 10
_SCORE_POSITIONS = 2**16  # padded history positions per scoring batch (users x longest history)


class SequenceConfig(ModelConfig):
    """Hyperparameters of :class:`SequenceRecommender`, then its runtime options.

    Defaults were tuned on MovieLens latest-small (per-user stratified 75/25 split, seed 42,
    nDCG@10 with training items excluded, items in time order; popularity 0.207, ALS 0.376):
    0.264 after 8 epochs (0.215 after 4, 0.247 after 6, 0.249 after 10: it overfits) with
    ``mean`` scoring over up to 2,000 items of history (0.236 over 200). On the temporal
    leave-last-one-out split the same training scores nDCG@10 0.050 / HR@10 0.097 with
    ``last`` scoring and 0.027 / 0.057 with ``mean``; popularity 0.019 / 0.041. Sampled
    softmax (MovieLens has 9.7k items) throughout: full softmax was ~8x slower per step.
    """

    embedding_dim: int = Field(64, ge=2, le=2048)
    """Dimensions of the item embedding fed to the GRU."""
    hidden_size: int = Field(128, ge=2, le=4096)
    """GRU state size (also the size of the output layer's item vectors)."""
    num_layers: int = Field(1, ge=1, le=4)
    """Stacked GRU layers."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0, allow_inf_nan=False)
    """Dropout on the embeddings and the GRU outputs (and between layers)."""
    max_length: int = Field(50, ge=2, le=10_000)
    """Next-item transitions per training window."""
    history_length: int = Field(2000, ge=1, le=100_000)
    """The most recent items of a user the GRU reads to score them."""
    scoring: Literal["mean", "last"] = "mean"
    """``last``: the next-item distribution after the user's last item (GRU4Rec's own score,
    best when the next item is what is asked: nDCG@10 0.050 against 0.019 for popularity on
    MovieLens' leave-last-one-out split, but 0.067 on the random per-user split). ``mean``: the
    next-item distributions after each item of the history, averaged: which items fit anywhere
    in the user's history (0.264 on the random split, 0.027 on leave-last-one-out). Choose
    ``last`` for next-item serving and temporal evaluation."""
    loss: Literal["auto", "full", "sampled"] = "auto"
    """``full`` softmax over every item, ``sampled`` softmax over the target and
    ``n_negatives`` shared negatives, ``auto``: full up to 5,000 items."""
    n_negatives: int = Field(512, ge=1, le=100_000)
    """Negatives shared by a batch in sampled softmax."""
    batch_size: int = Field(32, ge=1, le=65_536)
    """Windows per gradient step."""
    epochs: int = Field(8, ge=1, le=1000)
    """Most passes over the windows (early stopping may end sooner)."""
    learning_rate: float = Field(3e-3, gt=0.0, le=1.0, allow_inf_nan=False)
    """Adam step size."""
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    """Adam L2 penalty."""
    patience: int = Field(3, ge=0, le=1000)
    """With validation data, stop after this many epochs without a better validation nDCG@10
    and keep the best epoch's weights; 0 trains every epoch."""
    validation_fraction: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    """Without ``validation`` data: the share of users (with 3+ items) whose latest item is
    held out for early stopping (0: none, train every epoch). On MovieLens a 10% share was too
    noisy to stop well, hence off by default; the train step passes the features' validation
    split when it has one."""

    # -- runtime options -----------------------------------------------------------
    device: str = "cpu"
    """"cpu", "gpu"/"cuda", "cuda:N" or "auto" (see :mod:`pipelines.compute.torch_device`);
    a GPU request without CUDA falls back to the CPU with a warning."""

    num_threads: int = Field(1, ge=0, le=1024)
    """CPU threads torch may use while fitting and scoring (0: torch's default, every core). One
    is the default: the GRU's small sequential steps gain nothing from more, and on a busy
    machine their synchronisation made each epoch several times slower."""

    runtime_options: ClassVar[frozenset[str]] = frozenset({"device", "num_threads"})

    @field_validator("device")
    @classmethod
    def _device_known(cls, value: str) -> str:
        from pipelines.compute.torch_device import _DEVICE_PATTERN, ALLOWED_DEVICES

        if not _DEVICE_PATTERN.match(str(value).strip().lower()):
            raise ValueError(f"device must be one of {ALLOWED_DEVICES}; got {value!r}")
        return str(value).strip().lower()


class SequenceRecommender(Recommender):
    """A GRU over each user's time-ordered items; scores are the next-item logits.

    After :meth:`fit`: ``net_`` (the torch module, on the resolved device), ``sequences_`` (each
    user's last ``history_length`` items, in order), ``item_popularity_`` and ``training_loss_``
    (mean loss per epoch); ``best_epoch_`` and ``validation_ndcg_`` when early stopping ran.
    """

    name: ClassVar[str] = "sequence"
    summary: ClassVar[str] = "GRU4Rec-style next-item model over each user's time-ordered items (torch, CPU or GPU)"
    config_class: ClassVar[type[ModelConfig]] = SequenceConfig
    uses_interaction_order: ClassVar[bool] = True
    config: SequenceConfig

    def __init__(self, config: SequenceConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.net_: Any = None
        self.device_: Any = None
        self.sequences_: list[np.ndarray] = []
        self.item_popularity_: np.ndarray | None = None
        self.best_epoch_: int | None = None
        self.validation_ndcg_: list[float] = []

    # -- fit -------------------------------------------------------------------------
    def fit(
        self,
        train: sp.csr_matrix,
        *,
        item_features: sp.csr_matrix | None = None,
        validation: sp.csr_matrix | None = None,
        callback: IterationCallback | None = None,
        interaction_order: sp.csr_matrix | None = None,
    ) -> "SequenceRecommender":
        """Train the GRU on each user's items in ``interaction_order``; returns self.

        ``interaction_order`` (users x items, the pattern of ``train``, values = 1-based time
        rank) orders the items; without it each user's items are shuffled with the seed and a
        warning says so. ``validation`` (users x items) drives early stopping; without it, a
        seeded share (``validation_fraction``) of users' latest items is held out instead.
        ``callback(epoch, loss, {"ndcg@10": ...})`` follows each epoch. ``item_features`` is
        unused. Raises TypeError/ValueError for a bad ``train``, ``validation`` or order.
        """
        from pipelines.compute.torch_device import import_torch, resolve_torch_device
        from pipelines.models import sequence_net

        torch = import_torch()
        cfg = self.config
        matrix = check_train(train, self.name)
        n_users, n_items = matrix.shape
        sequences = time_ordered_sequences(matrix, interaction_order, cfg.seed, self.name)
        rng = seeding.rng(cfg.seed)
        train_sequences, held_out, seen = self._validation_split(sequences, validation, matrix, rng)
        inputs, targets = sequence_net.training_windows(train_sequences, cfg.max_length)
        if len(inputs) == 0:
            raise ValueError("train has no user with two or more items: no next-item transition to learn")

        device = resolve_torch_device(cfg.device)
        counts = np.asarray((matrix > 0).sum(axis=0), dtype=np.float64).ravel()
        sampled = cfg.loss == "sampled" or (cfg.loss == "auto" and n_items > FULL_SOFTMAX_MAX_ITEMS)
        started = time.perf_counter()
        fork_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices), sequence_net.torch_threads(cfg.num_threads):
            torch.manual_seed(cfg.seed)
            net = sequence_net.GRU4RecNet(n_items, cfg.embedding_dim, cfg.hidden_size, cfg.num_layers, cfg.dropout)
            net = net.to(device)
            self.net_, self.device_ = net, device
            self.n_users, self.n_items = n_users, n_items
            self.sequences_ = [seq[-cfg.history_length :] for seq in train_sequences]
            optimizer = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
            sampler = sequence_net.NegativeSampler(counts, cfg.n_negatives, rng, device) if sampled else None
            best = (-np.inf, None, -1)  # (ndcg, weights, epoch)
            self.training_loss_, self.validation_ndcg_ = [], []
            for epoch in range(cfg.epochs):
                net.train()
                loss = sequence_net.train_epoch(net, optimizer, inputs, targets, cfg.batch_size, rng, sampler, device)
                self.training_loss_.append(loss)
                metrics = None
                if held_out is not None:
                    net.eval()
                    ndcg = self._validation_ndcg(held_out, seen)
                    self.validation_ndcg_.append(ndcg)
                    metrics = {f"ndcg@{_VALIDATION_K}": ndcg}
                    if ndcg > best[0]:
                        best = (ndcg, copy.deepcopy(net.state_dict()), epoch)
                log.debug("sequence epoch %d loss %.4f %s", epoch, loss, metrics or "")
                if callback is not None:
                    callback(epoch, loss, metrics)
                if held_out is not None and epoch - best[2] >= cfg.patience:
                    break
            if best[1] is not None:
                net.load_state_dict(best[1])
                self.best_epoch_ = best[2]
        net.eval()
        # Score known users from everything they did, held-out items included.
        self.sequences_ = [seq[-cfg.history_length :] for seq in sequences]
        self.item_popularity_ = item_popularity(matrix)
        log.info(
            "fit sequence on %s: %d windows, %d epochs (best %s), %s softmax, %.2fs",
            device, len(inputs), len(self.training_loss_), self.best_epoch_, "sampled" if sampled else "full",
            time.perf_counter() - started,
        )
        return self

    def _validation_split(
        self, sequences: list[np.ndarray], validation: Any, matrix: sp.csr_matrix, rng: np.random.Generator
    ) -> tuple[list[np.ndarray], sp.csr_matrix | None, sp.csr_matrix]:
        """(training sequences, held-out CSR or None, the training items to exclude when validating).

        ``validation`` is used as given; without it (and ``validation_fraction > 0``) a seeded share of the
        users with 3+ items lose their latest item to the held-out set.
        """
        if validation is not None:
            if not sp.issparse(validation) or validation.shape != matrix.shape:
                raise ValueError(
                    f"validation must be a SciPy sparse matrix of shape {matrix.shape} (users x items), "
                    f"got {type(validation).__name__} of shape {getattr(validation, 'shape', None)}"
                )
            return sequences, sp.csr_matrix(validation), matrix
        eligible = np.flatnonzero([len(seq) >= 3 for seq in sequences])
        if self.config.patience == 0 or self.config.validation_fraction == 0 or len(eligible) == 0:
            return sequences, None, matrix
        n_held = max(1, int(round(self.config.validation_fraction * len(eligible))))
        users = np.sort(rng.choice(eligible, size=n_held, replace=False))
        held_items = np.array([sequences[u][-1] for u in users])
        train_sequences = list(sequences)
        for user in users:
            train_sequences[user] = sequences[user][:-1]
        held = sp.csr_matrix((np.ones(len(users), np.float32), (users, held_items)), shape=matrix.shape)
        seen = matrix - matrix.multiply(held > 0)
        seen.eliminate_zeros()
        return train_sequences, held, seen.tocsr()

    def _validation_ndcg(self, held_out: sp.csr_matrix, seen: sp.csr_matrix) -> float:
        """nDCG@10 of the held-out items, the items in the training sequences (``seen``) excluded."""
        from pipelines.evaluation.metrics import ranking_metrics

        users = np.flatnonzero(np.diff(held_out.indptr) > 0)
        users = users[[len(self.sequences_[u]) > 0 for u in users]]
        if len(users) == 0:
            return 0.0
        scores = self._scores([self.sequences_[u] for u in users])
        _mask_seen(scores, np.arange(len(users)), seen[users])
        k = min(_VALIDATION_K, self.n_items)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
        return float(ranking_metrics(top, held_out[users], _VALIDATION_K, self.n_items)[f"ndcg@{_VALIDATION_K}"])

    # -- scoring ---------------------------------------------------------------------
    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return self._scores([self.sequences_[u] for u in user_idx])

    def score_new_users(
        self, seen: sp.csr_matrix, *, interaction_order: sp.csr_matrix | None = None
    ) -> np.ndarray:
        """Fold-in: run the GRU over each new user's seed items, in ``interaction_order`` when
        given (otherwise in item index order), and score the next item."""
        self._check_fitted()
        matrix = check_seen(seen, self.n_items)
        matrix.eliminate_zeros()
        matrix.sort_indices()
        order = None if interaction_order is None else check_interaction_order(interaction_order, matrix)
        sequences = []
        for row in range(matrix.shape[0]):
            lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
            items = matrix.indices[lo:hi].astype(np.int64)
            if order is not None:
                items = items[np.argsort(order.data[lo:hi], kind="stable")]
            sequences.append(items[-self.config.history_length :])
        return self._scores(sequences)

    def _scores(self, sequences: list[np.ndarray]) -> np.ndarray:
        from pipelines.models import sequence_net

        scores = np.empty((len(sequences), self.n_items), dtype=np.float32)
        lengths = np.array([len(seq) for seq in sequences], dtype=np.int64)
        known = np.flatnonzero(lengths > 0)
        with sequence_net.torch_threads(self.config.num_threads):
            for batch in sequence_net.length_batches(lengths[known], _SCORE_POSITIONS):
                rows = known[batch]
                tokens, row_lengths = sequence_net.pad_batch([sequences[r] for r in rows], int(lengths[rows].max()))
                scores[rows] = sequence_net.history_scores(
                    self.net_, tokens, row_lengths, self.device_, self.config.scoring
                )
        if len(known) < len(sequences):  # no history: nothing to continue, give the popular items
            scores[lengths == 0] = self._unknown_user_scores()
        return scores

    # -- persistence -------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        lengths = np.array([len(seq) for seq in self.sequences_], dtype=np.int64)
        state = {
            "sequence_indptr_": np.r_[0, np.cumsum(lengths)].astype(np.int64),
            "sequence_items_": np.concatenate(self.sequences_).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64),
        }
        for key, tensor in self.net_.state_dict().items():
            state[f"net.{key}"] = tensor.detach().cpu().numpy()
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        from pipelines.compute.torch_device import import_torch, resolve_torch_device
        from pipelines.models import sequence_net

        torch = import_torch()
        cfg = self.config
        indptr, items = state["sequence_indptr_"], state["sequence_items_"]
        self.sequences_ = [items[indptr[u] : indptr[u + 1]] for u in range(len(indptr) - 1)]
        self.device_ = resolve_torch_device(cfg.device)
        net = sequence_net.GRU4RecNet(self.n_items, cfg.embedding_dim, cfg.hidden_size, cfg.num_layers, cfg.dropout)
        weights = {key[len("net.") :]: torch.as_tensor(value) for key, value in state.items() if key.startswith("net.")}
        net.load_state_dict(weights)
        self.net_ = net.to(self.device_).eval()
