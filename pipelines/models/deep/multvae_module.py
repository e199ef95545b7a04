"""Mult-VAE (Liang et al. 2018) as a pure ``nn.Module`` (nanoGPT style: built from its config).

Encoder: the user's L2-normalised interaction row, dropout, tanh MLP -> (mu, logvar) of a
Gaussian latent. Rows travel as sparse tensors, so the input layer costs O(interactions), not
O(users x items). Decoder: tanh MLP from the latent -> one logit per item, a multinomial over
the catalogue. Loss: -sum_i x_i log softmax(logits)_i + beta * KL(q(z|x) || N(0, I)), averaged
over the users of the batch.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from pipelines.models.deep.config import MultVaeConfig


def sparse_rows(rows: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    """Binary CSR rows -> an L2-normalised sparse COO tensor on ``device`` (empty rows stay 0).

    ``rows`` must hold no duplicate entries (the models pass canonical matrices).
    """
    if not rows.has_sorted_indices:  # row-major sorted cells are what a coalesced tensor is
        rows = rows.sorted_indices()
    coo = rows.tocoo()
    counts = np.maximum(np.diff(rows.indptr), 1).astype(np.float32)
    values = (coo.data > 0).astype(np.float32) / np.sqrt(counts)[coo.row]
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(indices, torch.from_numpy(values), rows.shape, is_coalesced=True, check_invariants=False).to(device)


def _linears(widths: list[int]) -> nn.ModuleList:
    """Linear layers between consecutive ``widths`` with Liang's initialisation."""
    layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
    for layer in layers:
        nn.init.xavier_normal_(layer.weight)
        nn.init.normal_(layer.bias, std=0.001)
    return layers


def _run(layers: nn.ModuleList, h: torch.Tensor) -> torch.Tensor:
    """Apply ``layers`` with tanh between them (none after the last)."""
    for index, layer in enumerate(layers):
        h = layer(h)
        if index < len(layers) - 1:
            h = torch.tanh(h)
    return h


_LOGVAR_BOUND = 20.0


class MultVaeModule(nn.Module):
    """Variational autoencoder with a multinomial likelihood over ``n_items``."""

    def __init__(self, config: MultVaeConfig, n_items: int, item_counts: np.ndarray | None = None) -> None:
        """Layers for ``n_items``; ``item_counts`` (interactions per item) sets the output bias.

        Starting the decoder's output bias at the log item frequencies (add-one smoothed) makes
        the initial softmax the popularity distribution; learning that from a near-zero bias
        takes thousands of steps, more than a small dataset offers.
        """
        super().__init__()
        self.config = config
        self.latent_dim = config.latent_dim
        # The encoder's last layer emits mu and logvar side by side, as in the paper's code.
        self.encoder = _linears([n_items, *config.encoder_dims, 2 * config.latent_dim])
        self.decoder = _linears([config.latent_dim, *config.decoder_widths(), n_items])
        self.input_dropout = nn.Dropout(config.dropout)
        if item_counts is not None:
            log_frequency = np.log(np.asarray(item_counts, dtype=np.float64) + 1.0)
            with torch.no_grad():
                self.decoder[-1].bias.copy_(torch.from_numpy(log_frequency - log_frequency.mean()))

    def encode(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of users' rows: a sparse (n, n_items) tensor from :func:`sparse_rows`.

        In training mode the stored values are dropped out (kept ones scaled by 1 / (1 - p)),
        exactly what ``nn.Dropout`` does to the dense row.
        """
        if self.training and self.config.dropout > 0:
            values = self.input_dropout(rows.values())
            rows = torch.sparse_coo_tensor(rows.indices(), values, rows.shape, is_coalesced=True, check_invariants=False)
        first, rest = self.encoder[0], self.encoder[1:]
        h = torch.sparse.mm(rows, first.weight.T) + first.bias
        if len(rest):
            h = _run(rest, torch.tanh(h))
        return h[:, : self.latent_dim], h[:, self.latent_dim :]

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Item logits (n, n_items) of latent vectors (n, latent_dim)."""
        return _run(self.decoder, latent)

    def score(self, rows: torch.Tensor) -> torch.Tensor:
        """Deterministic scores for ranking: decode the posterior mean (use in eval mode)."""
        mu, _ = self.encode(rows)
        return self.decode(mu)

    def forward(self, rows: torch.Tensor, beta: float) -> torch.Tensor:
        """The negative ELBO with KL weight ``beta``, averaged over the batch's users.

        ``rows`` come from :func:`sparse_rows`: their stored cells are the interactions.
        """
        mu, logvar = self.encode(rows)
        # Bounded so exp(logvar) stays finite at any accepted step size (a variance of e^+-20 is
        # far outside what a trained encoder emits).
        logvar = logvar.clamp(-_LOGVAR_BOUND, _LOGVAR_BOUND)
        latent = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        log_probs = torch.log_softmax(self.decode(latent), dim=1)
        user, item = rows.indices()
        neg_log_likelihood = -log_probs[user, item].sum() / rows.shape[0]
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1).mean()
        return neg_log_likelihood + beta * kl
