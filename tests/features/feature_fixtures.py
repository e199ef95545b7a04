"""Generators of tiny clean-contract data for the features tests (imported by conftest and tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

GENRE_POOL = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]
WORDS = ["space", "love", "war", "night", "city", "dream", "ghost", "robot"]


def make_interactions(n_users: int = 30, n_items: int = 40, per_user: tuple[int, int] = (2, 15), seed: int = 0) -> pd.DataFrame:
    """Clean-contract interactions: str ids, float64 ratings, int64 timestamps, one row per pair."""
    gen = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        count = int(gen.integers(per_user[0], per_user[1] + 1))
        for j in gen.choice(n_items, size=count, replace=False):
            rows.append((f"u{u:03d}", f"i{j:03d}", float(gen.integers(1, 11)) / 2, int(gen.integers(1e9, 1.1e9))))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return frame.astype({"rating": "float64", "timestamp": "int64"})


def make_items(n_items: int = 40, seed: int = 0, skip: tuple[int, ...] = ()) -> pd.DataFrame:
    """Item metadata in the raw/items contract (title with year, pipe genres, space-joined tags)."""
    gen = np.random.default_rng(seed)
    rows = []
    for j in range(n_items):
        if j in skip:
            continue
        genres = "|".join(gen.choice(GENRE_POOL, size=int(gen.integers(1, 3)), replace=False))
        title = " ".join(gen.choice(WORDS, size=2)) + f" ({1980 + j})"
        tags = " ".join(gen.choice(WORDS, size=int(gen.integers(0, 3))))
        rows.append((f"i{j:03d}", title, genres if j % 7 else "(no genres listed)", tags))
    return pd.DataFrame(rows, columns=["item_id", "title", "genres", "tags"])


def write_clean(root: Path, frame: pd.DataFrame, key: str = "run1", n_files: int = 2) -> Path:
    """Write ``frame`` as ``clean/<key>/interactions/part.N.parquet``; returns ``clean/<key>``."""
    folder = root / "clean" / key / "interactions"
    folder.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), n_files)):
        frame.iloc[part].to_parquet(folder / f"part.{i}.parquet", index=False)
    (folder.parent / "manifest.json").write_text('{"rows_clean": %d}\n' % len(frame))  # readers require it
    return folder.parent
