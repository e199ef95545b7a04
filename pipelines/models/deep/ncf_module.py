"""The NCF two-tower network as a pure ``nn.Module`` (nanoGPT style: built from its config).

score(u, i) = <user_tower(user_embedding[u]), item_tower(item_embedding[i])> + item_bias[i].
With no tower layers the towers are the identity and this is BPR-style matrix factorization.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.models.deep.ncf import NcfConfig


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
    """User and item embeddings, optional MLP towers and item biases; scores are dot products."""

    def __init__(self, config: NcfConfig, n_users: int, n_items: int) -> None:
        super().__init__()
        self.config = config
        self.user_embedding = nn.Embedding(n_users, config.embedding_dim)
        self.item_embedding = nn.Embedding(n_items, config.embedding_dim)
        self.item_bias = nn.Embedding(n_items, 1) if config.item_bias else None
        self.user_tower = _tower(config.embedding_dim, config.tower_layers, config.dropout)
        self.item_tower = _tower(config.embedding_dim, config.tower_layers, config.dropout)
        nn.init.normal_(self.user_embedding.weight, std=config.init_std)
        nn.init.normal_(self.item_embedding.weight, std=config.init_std)
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """(len(users), d) outputs of the user tower."""
        return self.user_tower(self.user_embedding(users))

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """(n, d) outputs of the item tower for ``items`` (every item when None)."""
        embedded = self.item_embedding.weight if items is None else self.item_embedding(items)
        return self.item_tower(embedded)

    def item_biases(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Biases of ``items`` (every item when None); zeros without biases."""
        if self.item_bias is None:
            n = self.item_embedding.num_embeddings if items is None else items.numel()
            return torch.zeros(n, device=self.item_embedding.weight.device)
        weight = self.item_bias.weight.squeeze(1)
        return weight if items is None else weight[items]

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """(len(users), n_items) scores of every item."""
        return self.user_vectors(users) @ self.item_vectors().T + self.item_biases()

    def forward(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """Mean training loss of a batch: ``users`` and ``positives`` (B,), ``negatives`` (B, m).

        Adds ``l2_regularization`` times the squared norms of the embeddings the batch used.
        """
        user_emb = self.user_embedding(users)
        items = torch.cat([positives[:, None], negatives], dim=1)  # (B, 1 + m)
        item_emb = self.item_embedding(items)
        user_vec = self.user_tower(user_emb)
        item_vec = self.item_tower(item_emb)
        scores = torch.einsum("bd,bnd->bn", user_vec, item_vec) + self.item_biases(items).view(items.shape)
        positive, negative = scores[:, :1], scores[:, 1:]
        loss_name = self.config.loss
        if loss_name == "bpr":
            loss = -F.logsigmoid(positive - negative).mean(dim=1)
        elif loss_name == "bce":
            loss = F.softplus(-positive).squeeze(1) + F.softplus(negative).mean(dim=1)
        else:  # "softmax": the positive against its sampled negatives
            loss = torch.logsumexp(scores, dim=1) - positive.squeeze(1)
        penalty = user_emb.pow(2).sum(dim=1) + item_emb.pow(2).sum(dim=(1, 2)) / items.shape[1]
        return loss.mean() + self.config.l2_regularization * penalty.mean()
