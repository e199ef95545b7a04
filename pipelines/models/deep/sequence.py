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
lives in :mod:`pipelines.models.deep.sequence_module`.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from pipelines import seeding
from pipelines.compute.torch_device import import_torch, resolve_torch_device
from pipelines.features.order import check_interaction_order, time_ordered_sequences
from pipelines.models.base import IterationCallback, ModelConfig
from pipelines.models.deep.base import TorchRecommender
from pipelines.models.deep.config import FULL_SOFTMAX_MAX_ITEMS, SequenceConfig
from pipelines.models.sparse_inputs import check_seen
from pipelines.models.validation import ValidationSet
from pipelines.models.warm_start import WarmStart

log = logging.getLogger(__name__)

_SCORE_POSITIONS = 2**16  # padded history positions per scoring batch (users x longest history)


class SequenceRecommender(TorchRecommender):
    """A GRU over each user's time-ordered items; scores are the next-item logits.

    After :meth:`fit`: ``net_`` (the torch module, on the resolved device), ``sequences_`` (each
    user's last ``history_length`` items, in order), ``item_popularity_``, and the record of
    :class:`~pipelines.models.deep.base.TorchRecommender`.
    """

    name: ClassVar[str] = "sequence"
    summary: ClassVar[str] = "GRU4Rec-style next-item model over each user's time-ordered items (torch, CPU or GPU)"
    config_class: ClassVar[type[ModelConfig]] = SequenceConfig
    uses_interaction_order: ClassVar[bool] = True
    input_values: ClassVar[str] = "weights"  # any stored value is an interaction, as before
    config: SequenceConfig
    net_: Any = None
    device_: Any = None
    sequences_: list[np.ndarray] = []  # replaced, never appended to, by each fit
    warm_start_fields: ClassVar[tuple[str, ...]] = ("embedding_dim", "hidden_size", "num_layers")
    # Item i is token i + 1 (0 pads); the output layer scores items directly.
    warm_start_rows: ClassVar[dict[str, tuple[str, int, int]]] = {
        "embedding.weight": ("item", 0, 1), "output.weight": ("item", 0, 0), "output.bias": ("item", 0, 0),
    }

    def _fit(
        self,
        train: sp.csr_matrix,
        *,
        validation: sp.csr_matrix | None,
        callback: IterationCallback | None,
        interaction_order: sp.csr_matrix | None = None,
        warm_start: WarmStart | None = None,
        **unused: Any,
    ) -> None:
        """Train the GRU on each user's items in ``interaction_order`` (without it each user's
        items are shuffled with the seed and a warning says so). ``validation`` drives early
        stopping; without it, a seeded share (``validation_fraction``) of users' latest items is
        held out instead. Raises ValueError for an order that does not match ``train`` or no
        user with two items."""
        from pipelines.models.deep import sequence_module, training

        torch = import_torch()
        cfg = self.config
        matrix = train
        n_items = matrix.shape[1]
        sequences = time_ordered_sequences(matrix, interaction_order, cfg.seed, self.name)
        rng = seeding.rng(cfg.seed)
        previous_seen = None if warm_start is None else warm_start.previous_seen
        train_sequences, held_out, seen = self._validation_split(sequences, validation, matrix, rng, previous_seen)
        inputs, targets = sequence_module.training_windows(train_sequences, cfg.max_length)
        if len(inputs) == 0:
            raise ValueError("train has no user with two or more items: no next-item transition to learn")
        counts = np.asarray((matrix > 0).sum(axis=0), dtype=np.float64).ravel()
        sampled = cfg.loss == "sampled" or (cfg.loss == "auto" and n_items > FULL_SOFTMAX_MAX_ITEMS)
        validation_set = None if held_out is None else ValidationSet.build(seen, held_out, cfg.validation_users, rng)

        with training.torch_session(cfg) as device:
            net = sequence_module.GRU4RecNet(n_items, cfg.embedding_dim, cfg.hidden_size, cfg.num_layers, cfg.dropout)
            net = net.to(device)
            self._start_from(net, warm_start)
            self.net_, self.device_ = net, device
            self.sequences_ = [seq[-cfg.history_length :] for seq in train_sequences]
            optimizer = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
            sampler = sequence_module.NegativeSampler(counts, cfg.n_negatives, rng, device) if sampled else None

            def run_epoch(epoch: int) -> float:
                return sequence_module.train_epoch(net, optimizer, inputs, targets, cfg.batch_size, rng, sampler, device)

            def score_users(users: np.ndarray) -> np.ndarray:
                return self._scores([self.sequences_[u] for u in users])

            outcome = training.train_epochs(
                net, run_epoch, score_users, validation_set, cfg,
                model_name=self.name, model_args={"n_items": n_items}, callback=callback,
            )
            self._keep(outcome, net)
        # Score known users from everything they did, held-out items included.
        self.sequences_ = [seq[-cfg.history_length :] for seq in sequences]
        log.debug("sequence: %d windows, %s softmax", len(inputs), "sampled" if sampled else "full")

    def _validation_split(
        self, sequences: list[np.ndarray], validation: Any, matrix: sp.csr_matrix, rng: np.random.Generator,
        previous_seen: sp.csr_matrix | None = None,
    ) -> tuple[list[np.ndarray], sp.csr_matrix | None, sp.csr_matrix]:
        """(training sequences, held-out CSR or None, the training items to exclude when validating).

        ``validation`` is used as given; without it (and ``validation_fraction > 0``) a seeded share of the
        users with 3+ items lose their latest item to the held-out set; with ``previous_seen`` (a warm
        start's), only users whose latest item the previous model did not train on.
        """
        if validation is not None:
            return sequences, validation, matrix
        eligible = np.flatnonzero([
            len(seq) >= 3 and (previous_seen is None or previous_seen[user, seq[-1]] == 0)
            for user, seq in enumerate(sequences)
        ])
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
        from pipelines.models.deep import sequence_module

        scores = np.empty((len(sequences), self.n_items), dtype=np.float32)
        lengths = np.array([len(seq) for seq in sequences], dtype=np.int64)
        known = np.flatnonzero(lengths > 0)
        with sequence_module.torch_threads(self.config.num_threads):
            for batch in sequence_module.length_batches(lengths[known], _SCORE_POSITIONS):
                rows = known[batch]
                tokens, row_lengths = sequence_module.pad_batch([sequences[r] for r in rows], int(lengths[rows].max()))
                scores[rows] = sequence_module.history_scores(
                    self.net_, tokens, row_lengths, self.device_, self.config.scoring
                )
        if len(known) < len(sequences):  # no history: nothing to continue, give the popular items
            scores[lengths == 0] = self._unknown_user_scores()
        return scores

    # -- persistence -------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        lengths = np.array([len(seq) for seq in self.sequences_], dtype=np.int64)
        items = np.concatenate(self.sequences_).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
        return {"sequence_indptr_": np.r_[0, np.cumsum(lengths)].astype(np.int64), "sequence_items_": items,
                **self._training_state()}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        from pipelines.models.deep import sequence_module

        torch = import_torch()
        cfg = self.config
        self._load_training_state(state)
        indptr, items = state["sequence_indptr_"], state["sequence_items_"]
        self.sequences_ = [items[indptr[u] : indptr[u + 1]] for u in range(len(indptr) - 1)]
        self.device_ = resolve_torch_device(cfg.device)
        net = sequence_module.GRU4RecNet(self.n_items, cfg.embedding_dim, cfg.hidden_size, cfg.num_layers, cfg.dropout)
        net.load_state_dict({key: torch.as_tensor(value) for key, value in self.module_state_.items()})
        self.net_ = net.to(self.device_).eval()
