"""The NCF two-tower network as a pure ``nn.Module`` (nanoGPT style: built from its config).

score(u, i) = <user_tower(user_input(u)), item_tower(item_embedding[i])> + item_bias[i], where
``user_input`` is the user's own embedding, the mean of history embeddings of the items the user
interacted with (FISM-style; the item being predicted is left out of its own history during
training), or both summed. With no tower layers the towers are the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.models.deep.config import NcfConfig


@dataclass(frozen=True)
class History:
    """Interaction histories of a batch's distinct users, and which of them each example has.

    Summing each distinct history once, then indexing, keeps a batch's cost at O(interactions
    of its users), however many of its examples share a user.
    """

    rows: torch.Tensor
    """Sparse COO (n_distinct, n_items): the users' items, value 1."""
    counts: torch.Tensor
    """(n_distinct,) float: items per user."""
    inverse: torch.Tensor
    """(n_examples,) long: the row of each example's user."""


def _tower(width: int, layers: tuple[int, ...], dropout: float) -> nn.Module:
    """An MLP ``width -> layers...`` with ReLU (and dropout) between layers; identity when empty."""
    if not layers:
        return nn.Identity()
    modules: list[nn.Module] = []
    for index, out in enumerate(layers):
        if index > 0:
            modules.append(nn.ReLU())
            if dropout > 0:
                modules.append(nn.Dropout(dropout))
        modules.append(nn.Linear(width, out))
        width = out
    return nn.Sequential(*modules)


class NcfModule(nn.Module):
    """User (id and/or history) and item embeddings, optional MLP towers and item biases."""

    def __init__(self, config: NcfConfig, n_users: int, n_items: int, item_counts: np.ndarray | None = None) -> None:
        """Tables for ``n_users`` x ``n_items``; ``item_counts`` (interactions per item) sets the
        initial item biases to the centred log frequencies, so training starts from popularity."""
        super().__init__()
        self.config = config
        dim = config.embedding_dim
        # Sparse gradients: a step touches only the rows its batch used (see optimizers()).
        self.user_embedding = nn.Embedding(n_users, dim, sparse=True) if "id" in config.user_input else None
        # Dense gradients: a batch's histories touch most items anyway.
        self.history_embedding = nn.Embedding(n_items, dim) if "history" in config.user_input else None
        self.item_embedding = nn.Embedding(n_items, dim, sparse=True)
        self.item_bias = nn.Embedding(n_items, 1, sparse=True) if config.item_bias else None
        self.user_tower = _tower(dim, config.tower_layers, config.dropout)
        self.item_tower = _tower(dim, config.tower_layers, config.dropout)
        for table in (self.user_embedding, self.history_embedding, self.item_embedding):
            if table is not None:
                nn.init.normal_(table.weight, std=config.init_std)
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)
            if item_counts is not None:
                log_frequency = np.log(np.asarray(item_counts, dtype=np.float64) + 1.0)
                with torch.no_grad():
                    self.item_bias.weight[:, 0] = torch.from_numpy(log_frequency - log_frequency.mean())

    @property
    def uses_history(self) -> bool:
        return self.history_embedding is not None

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Lazy Adam over the embedding rows a batch touched, plain Adam for the towers.

        Updating only the touched rows keeps a step's cost independent of the catalogue size;
        the embeddings are regularized by ``l2_regularization`` in the loss, the towers (and
        the history table, which a batch touches densely) by ``weight_decay`` too.
        """
        cfg = self.config
        tables = (self.user_embedding, self.item_embedding, self.item_bias)
        sparse = [table.weight for table in tables if table is not None]
        dense = [p for tower in (self.user_tower, self.item_tower) for p in tower.parameters()]
        if self.history_embedding is not None:
            dense.append(self.history_embedding.weight)
        optimizers: list[torch.optim.Optimizer] = [torch.optim.SparseAdam(sparse, lr=cfg.learning_rate)]
        if dense:
            optimizers.append(torch.optim.Adam(dense, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=True))
        return optimizers

    def user_inputs(
        self, users: torch.Tensor | None, history: History | None, leave_out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Tower inputs (n, d): id embeddings of ``users`` plus mean history embeddings.

        ``leave_out`` (one item per user) is removed from that user's history mean: the item a
        training example predicts must not be part of its own input. ``users`` None (a new user)
        leaves out the id part; ``history`` None, the history part.
        """
        parts = []
        if self.user_embedding is not None and users is not None:
            parts.append(self.user_embedding(users))
        if self.history_embedding is not None and history is not None:
            total = torch.sparse.mm(history.rows, self.history_embedding.weight)[history.inverse]
            counts = history.counts[history.inverse]
            if leave_out is not None:
                total = total - self.history_embedding(leave_out)
                counts = counts - 1
            parts.append(total / counts.clamp(min=1).unsqueeze(1))
        if not parts:
            raise ValueError("a user needs an id (user_input with 'id') or a history (with 'history')")
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def user_vectors(self, users: torch.Tensor | None, history: History | None) -> torch.Tensor:
        """(n, d) outputs of the user tower."""
        return self.user_tower(self.user_inputs(users, history))

    def item_vectors(self) -> torch.Tensor:
        """(n_items, d) outputs of the item tower."""
        return self.item_tower(self.item_embedding.weight)

    def item_biases(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Biases of ``items`` (every item when None); zeros without biases."""
        if self.item_bias is None:
            shape = (self.item_embedding.num_embeddings,) if items is None else items.shape
            return torch.zeros(shape, device=self.item_embedding.weight.device)
        if items is None:
            return self.item_bias.weight.squeeze(1)
        return self.item_bias(items).squeeze(-1)

    def score_all(self, users: torch.Tensor | None, history: History | None) -> torch.Tensor:
        """(n, n_items) scores of every item."""
        return self.user_vectors(users, history) @ self.item_vectors().T + self.item_biases()

    def forward(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, history: History | None
    ) -> torch.Tensor:
        """Mean training loss of a batch: ``users`` and ``positives`` (B,), ``negatives``.

        ``negatives`` is (B, m), m items per example, for the ``bpr`` and ``bce`` losses, and
        (m,) items shared by the whole batch for ``softmax`` (a sampled softmax; a shared
        negative equal to an example's positive is masked out). ``history`` holds the examples'
        user histories. Adds ``l2_regularization`` times the squared norms of the user inputs and
        item embeddings the batch used.
        """
        user_in = self.user_inputs(users, history, leave_out=positives)
        user_vec = self.user_tower(user_in)
        positive_emb = self.item_embedding(positives)
        negative_emb = self.item_embedding(negatives)
        positive = (user_vec * self.item_tower(positive_emb)).sum(dim=1) + self.item_biases(positives)
        if self.config.loss == "softmax":
            negative = user_vec @ self.item_tower(negative_emb).T + self.item_biases(negatives)
            negative = negative.masked_fill(negatives[None, :] == positives[:, None], float("-inf"))
            loss = torch.logsumexp(torch.cat([positive[:, None], negative], dim=1), dim=1) - positive
            negative_norms = negative_emb.pow(2).sum(dim=1).mean()
        else:
            negative = torch.einsum("bd,bnd->bn", user_vec, self.item_tower(negative_emb)) + self.item_biases(negatives)
            if self.config.loss == "bpr":
                loss = -F.logsigmoid(positive[:, None] - negative).mean(dim=1)
            else:  # "bce"
                loss = F.softplus(-positive) + F.softplus(negative).mean(dim=1)
            negative_norms = negative_emb.pow(2).sum(dim=2).mean(dim=1)
        penalty = user_in.pow(2).sum(dim=1) + (positive_emb.pow(2).sum(dim=1) + negative_norms) / 2
        return loss.mean() + self.config.l2_regularization * penalty.mean()
