"""PNG plots logged as run artifacts (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss_curve(losses: Sequence[float], path: str | Path, title: str = "training loss") -> Path:
    """Line plot of the per-iteration training loss."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    if losses:
        ax.plot(range(1, len(losses) + 1), losses, marker="o")
    else:
        ax.text(0.5, 0.5, "this model has no iterative loss", ha="center", va="center")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_metrics_at_k(
    metrics_by_k: Mapping[int, Mapping[str, float]], path: str | Path, names: Sequence[str] = ("precision", "recall", "ndcg", "map")
) -> Path:
    """One line per metric against K."""
    plt = _pyplot()
    ks = sorted(metrics_by_k)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in names:
        values = [metrics_by_k[k].get(f"{name}@{k}") for k in ks]
        if all(v is not None for v in values):
            ax.plot(ks, values, marker="o", label=name)
    ax.set_xlabel("K")
    ax.set_ylabel("value")
    ax.set_title("ranking metrics at K")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_leaderboard(scores: Mapping[str, float], metric: str, path: str | Path) -> Path:
    """Horizontal bar chart of one metric per candidate model."""
    plt = _pyplot()
    names = sorted(scores, key=scores.get)
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.5))
    ax.barh(names, [scores[n] for n in names])
    ax.set_xlabel(metric)
    ax.set_title(f"candidates by {metric}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
