"""The torch side of the GRU4Rec model: network, losses, negative sampling, training epochs, scoring.

Imported only by :mod:`pipelines.models.deep.sequence` when a sequence model is fit or loaded, so
``import pipelines.models`` never imports torch. Item ``i`` is token ``i + 1``; token 0 pads.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class GRU4RecNet(nn.Module):
    """Item embedding -> GRU -> logits over every item (Hidasi et al. 2016, with a plain GRU).

    ``hidden_states`` gives the GRU output at every position; ``logits`` maps hidden states to
    one score per item through the output layer (weight ``n_items x hidden`` and bias), which
    sampled softmax reads row by row.
    """

    def __init__(self, n_items: int, embedding_dim: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        self.gru = nn.GRU(
            embedding_dim, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, n_items)

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """(batch, length) tokens -> (batch, length, hidden) GRU outputs."""
        states, _ = self.gru(self.dropout(self.embedding(tokens)))
        return self.dropout(states)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        return self.output(states)


def pad_batch(sequences: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded tokens (n, length) of each sequence's last ``length`` items, and their lengths."""
    tokens = np.zeros((len(sequences), length), dtype=np.int64)
    lengths = np.zeros(len(sequences), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = seq[-length:]
        tokens[row, : len(tail)] = tail + 1
        lengths[row] = len(tail)
    return tokens, lengths


def training_windows(sequences: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut sequences into (input, target) windows of ``length`` next-item transitions.

    A sequence of n items has n - 1 transitions, split into consecutive windows; returns right-
    padded ``inputs`` and ``targets`` token arrays (0 = padding, no loss), one row per window.
    """
    inputs, targets = [], []
    for seq in sequences:
        for start in range(0, len(seq) - 1, length):
            window = seq[start : start + length + 1]
            inputs.append(window[:-1])
            targets.append(window[1:])
    x, _ = pad_batch(inputs, length) if inputs else (np.zeros((0, length), np.int64), None)
    y, _ = pad_batch(targets, length) if targets else (np.zeros((0, length), np.int64), None)
    return x, y


def batch_loss(
    net: GRU4RecNet,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor | None,
    log_q: torch.Tensor | None,
) -> torch.Tensor:
    """Mean next-item cross-entropy over the non-padded positions of a batch.

    With ``negatives`` (item indices shared by the batch, drawn with probabilities ``exp(log_q)``)
    the softmax runs over the target and those negatives, with the logQ correction of sampled
    softmax (Jean et al. 2015) and accidental hits masked; without, over every item.
    """
    states = net.hidden_states(inputs)
    mask = targets > 0
    hidden = states[mask]  # (positions, hidden)
    target_items = targets[mask] - 1
    if negatives is None:
        return F.cross_entropy(net.logits(hidden), target_items)
    weight, bias = net.output.weight, net.output.bias
    positive = (hidden * weight[target_items]).sum(-1) + bias[target_items]
    negative = hidden @ weight[negatives].T + bias[negatives]
    negative = negative - log_q[negatives]
    positive = positive - log_q[target_items]
    negative = negative.masked_fill(negatives[None, :] == target_items[:, None], float("-inf"))
    logits = torch.cat([positive[:, None], negative], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


@torch.no_grad()
def history_scores(
    net: GRU4RecNet, tokens: np.ndarray, lengths: np.ndarray, device: torch.device, mode: str
) -> np.ndarray:
    """Scores (n, n_items) of right-padded histories (lengths >= 1).

    ``last``: the next-item logits after each history's last item. ``mean``: the next-item
    probabilities after every item of the history, averaged. Only real positions are scored,
    a few thousand at a time, so the (positions, items) probabilities never exist whole.
    """
    batch = torch.as_tensor(tokens, device=device)
    states = net.hidden_states(batch)
    lengths_t = torch.as_tensor(lengths, device=device)
    rows = torch.arange(len(batch), device=device)
    if mode == "last":
        return net.logits(states[rows, lengths_t - 1]).float().cpu().numpy()
    valid = torch.arange(tokens.shape[1], device=device)[None, :] < lengths_t[:, None]
    flat, owner = states[valid], rows[:, None].expand_as(valid)[valid]
    n_items = net.output.out_features
    step = max(1, _MEAN_CHUNK_ELEMENTS // n_items)
    total = torch.zeros((len(batch), n_items), device=device)
    for start in range(0, len(flat), step):
        probabilities = torch.softmax(net.logits(flat[start : start + step]).float(), dim=-1)
        total.index_add_(0, owner[start : start + step], probabilities)
    return (total / lengths_t[:, None].to(total.dtype)).cpu().numpy()


def length_batches(lengths: np.ndarray, max_positions: int) -> list[np.ndarray]:
    """Row groups of similar length whose padded size (rows x longest) stays near ``max_positions``."""
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        rows = max(1, max_positions // max(1, int(lengths[order[start]])))
        batches.append(order[start : start + rows])
        start += rows
    return batches


_MEAN_CHUNK_ELEMENTS = 2**24  # positions x items per softmax chunk (64 MiB of float32)
NEGATIVE_EXPONENT = 0.75  # sampled negatives ~ (count + 1) ** 0.75, as word2vec
@contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Hold torch's intra-op thread count at ``num_threads`` (0: leave it), then restore it."""
    previous = torch.get_num_threads()
    if num_threads and num_threads != previous:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


class NegativeSampler:
    """Shared negatives for sampled softmax, drawn with the seeded NumPy generator."""

    def __init__(self, counts: np.ndarray, n_negatives: int, rng: np.random.Generator, device: torch.device) -> None:
        weights = (counts + 1.0) ** NEGATIVE_EXPONENT
        probabilities = weights / weights.sum()
        self.cumulative = np.cumsum(probabilities)
        self.n_negatives = n_negatives
        self.rng = rng
        self.device = device
        self.log_q = torch.as_tensor(np.log(probabilities * n_negatives), dtype=torch.float32, device=device)

    def draw(self) -> torch.Tensor:
        picks = np.searchsorted(self.cumulative, self.rng.random(self.n_negatives) * self.cumulative[-1], side="right")
        picks = np.minimum(picks, len(self.cumulative) - 1)
        return torch.as_tensor(picks, dtype=torch.long, device=self.device)


def train_epoch(
    net: GRU4RecNet,
    optimizer: torch.optim.Optimizer,
    inputs: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    sampler: NegativeSampler | None,
    device: torch.device,
) -> float:
    """One pass over the windows in a seeded shuffled order; returns the mean batch loss."""
    order = rng.permutation(len(inputs))
    total, batches = 0.0, 0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        x = torch.as_tensor(inputs[rows], device=device)
        y = torch.as_tensor(targets[rows], device=device)
        negatives = None if sampler is None else sampler.draw()
        loss = batch_loss(net, x, y, negatives, None if sampler is None else sampler.log_q)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        batches += 1
    if not np.isfinite(total):
        raise FloatingPointError("sequence training loss is not finite; lower learning_rate")
    return total / max(batches, 1)
