"""A seeded generator of interactions with planted structure a recommender can learn.

The world: every item has a taste vector dominated by one latent factor (sometimes two), a
Zipf-like popularity and a quality; every user has a taste vector that likes one or two
factors. A user picks items with probability proportional to popularity x exp(taste . item),
rates them by affinity plus noise (0.5..5.0 in half steps), at times spread over three years.
Item metadata (title words, genres, tags) comes from the item's dominant factors, so content
carries signal too.

Users are split into contiguous partitions; partition ``p`` depends only on ``(seed, p)`` and
the sizes, so partitions are generated independently (``dd.from_map``) and never need the
whole frame. The small item side (n_items x n_factors) is regenerated from the seed and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.constants import GENRES, ITEM, RATING, SOURCE_ROW, TAGS, TIMESTAMP, TITLE, USER
from pipelines.data.config import IngestConfig, load_ingest_config

if TYPE_CHECKING:
    import dask.dataframe as dd
    import scipy.sparse as sp

GENRE_NAMES = (
    "Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
    "Family", "Sport", "History", "Biography",
)  # fmt: skip
# Title and tag words per genre: an item's words come from its dominant factors.
THEME_WORDS = (
    ("Fury", "Strike", "Bullet", "Chase", "Steel"), ("Quest", "Island", "Voyage", "Map", "Summit"),
    ("Paper", "Toy", "Bunny", "Pixel", "Dragonfly"), ("Wedding", "Roommate", "Prank", "Uncle", "Party"),
    ("Heist", "Mob", "Alibi", "Getaway", "Racket"), ("Planet", "Harvest", "Ocean", "Witness", "Archive"),
    ("Letters", "Winter", "Daughter", "Silence", "Promise"), ("Wizard", "Crown", "Spell", "Realm", "Unicorn"),
    ("Cellar", "Curse", "Shadow", "Scream", "Haunting"), ("Melody", "Stage", "Chorus", "Rhythm", "Encore"),
    ("Clue", "Riddle", "Cipher", "Locket", "Detective"), ("Kiss", "Heart", "Paris", "Valentine", "Sweetheart"),
    ("Galaxy", "Android", "Orbit", "Robot", "Nebula"), ("Trap", "Pursuit", "Hostage", "Edge", "Countdown"),
    ("Trench", "Battalion", "Front", "Sniper", "Armistice"), ("Saddle", "Frontier", "Sheriff", "Canyon", "Outlaw"),
    ("Puppy", "Holiday", "Backyard", "Grandma", "Treehouse"), ("Champion", "Rookie", "Stadium", "Goal", "Coach"),
    ("Empire", "Dynasty", "Revolution", "Chronicle", "Throne"), ("Life", "Legend", "Genius", "Memoir", "Portrait"),
)  # fmt: skip

TIME_START = 1_420_070_400  # 2015-01-01T00:00:00Z
TIME_SPAN = 3 * 365 * 86_400
ROWS_PER_PARTITION = 1_000_000  # target when n_partitions is auto
ZIPF_EXPONENT = 1.0
TASTE_WEIGHT = 3.0  # how strongly taste, rather than popularity, drives what users pick
_BLOCK_CELLS = 4_000_000  # users x items scored at once, bounds memory per block

# Independent random streams, each keyed by (seed, stream, ...).
_ITEMS, _COUNTS, _USERS, _METADATA = range(4)


def _stream(seed: int, *keys: int) -> np.random.Generator:
    """A generator for one stream of ``seed``; streams never overlap (SeedSequence spawn keys)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=keys))


def genre_name(factor: int) -> str:
    """The genre a latent factor stands for (names repeat with a suffix past 20 factors)."""
    base = GENRE_NAMES[factor % len(GENRE_NAMES)]
    return base if factor < len(GENRE_NAMES) else f"{base} {factor // len(GENRE_NAMES) + 1}"


def n_partitions(cfg: IngestConfig) -> int:
    """Partitions to split users into: configured, else about ROWS_PER_PARTITION rows each."""
    if cfg.n_partitions is not None:
        return min(cfg.n_partitions, cfg.n_users)
    users_per_part = max(1, int(ROWS_PER_PARTITION // cfg.interactions_per_user))
    return max(1, -(-cfg.n_users // users_per_part))


def partition_users(cfg: IngestConfig, part_index: int) -> tuple[int, int]:
    """The user numbers [first, stop) of partition ``part_index`` (near-equal contiguous ranges)."""
    parts = n_partitions(cfg)
    return part_index * cfg.n_users // parts, (part_index + 1) * cfg.n_users // parts


def partition_counts(cfg: IngestConfig, part_index: int) -> np.ndarray:
    """Interactions per user of one partition (lognormal around the mean, in [1, n_items])."""
    first, stop = partition_users(cfg, part_index)
    n = stop - first
    sigma = 0.6
    mu = np.log(cfg.interactions_per_user) - sigma**2 / 2
    counts = _stream(cfg.seed, _COUNTS, part_index).lognormal(mu, sigma, n)
    return np.clip(np.rint(counts), 1, cfg.n_items).astype(np.int64)


def partition_offsets(cfg: IngestConfig) -> np.ndarray:
    """First global row number of every partition (cheap: draws counts only)."""
    sizes = [int(partition_counts(cfg, p).sum()) for p in range(n_partitions(cfg))]
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


@lru_cache(maxsize=8)
def _item_world(seed: int, n_items: int, n_factors: int) -> dict[str, np.ndarray]:
    """Item factors, dominant factors, popularity logits and quality (read-only arrays)."""
    rng = _stream(seed, _ITEMS)
    dominant = rng.integers(0, n_factors, n_items)
    secondary = rng.integers(0, n_factors, n_items)
    has_secondary = (rng.random(n_items) < 0.5) & (secondary != dominant)
    factors = rng.normal(0.0, 0.25, (n_items, n_factors))
    factors[np.arange(n_items), dominant] += 1.0
    factors[np.arange(n_items)[has_secondary], secondary[has_secondary]] += 0.5
    rank = rng.permutation(n_items) + 1  # popularity rank, 1 = most popular
    world = {
        "factors": factors,
        "dominant": dominant,
        "secondary": np.where(has_secondary, secondary, -1),
        "pop_logit": -ZIPF_EXPONENT * np.log(rank),
        "quality": rng.normal(0.0, 0.3, n_items),
    }
    for array in world.values():
        array.setflags(write=False)
    return world


def _top_k_rows(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the columns of the ``counts[row]`` largest keys: (row numbers, columns)."""
    kmax = int(counts.max())
    if kmax < keys.shape[1]:
        part = np.argpartition(-keys, kmax - 1, axis=1)[:, :kmax]
    else:
        part = np.tile(np.arange(keys.shape[1]), (keys.shape[0], 1))
    order = np.argsort(-np.take_along_axis(keys, part, axis=1), axis=1, kind="stable")
    chosen = np.take_along_axis(part, order, axis=1)
    keep = np.arange(kmax)[None, :] < counts[:, None]
    rows = np.broadcast_to(np.arange(keys.shape[0])[:, None], keep.shape)[keep]
    return rows, chosen[keep]


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            USER: pd.Series([], dtype="str"),
            ITEM: pd.Series([], dtype="str"),
            RATING: pd.Series([], dtype="float64"),
            TIMESTAMP: pd.Series([], dtype="int64"),
            SOURCE_ROW: pd.Series([], dtype="int64"),
        }
    )


def generate_partition(
    cfg: IngestConfig | dict[str, Any], part_index: int, row_offset: int | None = None
) -> pd.DataFrame:
    """Interactions of the users in partition ``part_index`` (deterministic from seed and index).

    Returns a frame with ``user_id`` ("u<n>"), ``item_id`` ("i<n>"), ``rating`` (float64),
    ``timestamp`` (int64 epoch seconds) and ``source_row`` (global row number; computed from
    the earlier partitions' counts when ``row_offset`` is None).

    Raises:
        IndexError: ``part_index`` is outside [0, n_partitions).
    """
    cfg = load_ingest_config(cfg)
    parts = n_partitions(cfg)
    if not 0 <= part_index < parts:
        raise IndexError(f"part_index must be in [0, {parts}), got {part_index}")
    first_user, _ = partition_users(cfg, part_index)
    counts = partition_counts(cfg, part_index)
    if row_offset is None:
        row_offset = sum(int(partition_counts(cfg, p).sum()) for p in range(part_index))
    if len(counts) == 0:
        return _empty_frame()
    world = _item_world(cfg.seed, cfg.n_items, cfg.n_factors)
    rng = _stream(cfg.seed, _USERS, part_index)
    n_users, f = len(counts), cfg.n_factors
    tastes = rng.normal(0.0, 0.25, (n_users, f))
    tastes[np.arange(n_users), rng.integers(0, f, n_users)] += 1.0
    second = rng.random(n_users) < 0.5
    tastes[np.arange(n_users)[second], rng.integers(0, f, int(second.sum()))] += 0.7
    user_bias = rng.normal(0.0, 0.3, n_users)

    users, items, affinities = [], [], []
    block = max(1, _BLOCK_CELLS // cfg.n_items)
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        affinity = tastes[start:stop] @ world["factors"].T
        gumbel = rng.gumbel(size=affinity.shape)  # Gumbel-top-k: sampling without replacement
        rows, cols = _top_k_rows(world["pop_logit"] + TASTE_WEIGHT * affinity + gumbel, counts[start:stop])
        users.append(rows + start)
        items.append(cols)
        affinities.append(affinity[rows, cols])
    user = np.concatenate(users)
    item = np.concatenate(items)
    raw = 3.0 + 1.2 * (np.concatenate(affinities) - 0.3) + world["quality"][item] + user_bias[user]
    rating = np.clip(np.rint((raw + rng.normal(0.0, 0.4, len(raw))) * 2) / 2, 0.5, 5.0)

    first_seen = TIME_START + rng.integers(0, int(TIME_SPAN * 0.8), n_users)
    active_for = np.minimum(rng.exponential(TIME_SPAN / 6, n_users), TIME_START + TIME_SPAN - first_seen)
    timestamp = first_seen[user] + (rng.random(len(user)) * active_for[user]).astype(np.int64)

    order = np.lexsort((timestamp, user))  # each user's events in time order
    user, item, rating, timestamp = user[order], item[order], rating[order], timestamp[order]
    return pd.DataFrame(
        {
            USER: pd.Series(np.char.add("u", (user + first_user).astype(str)), dtype="str"),
            ITEM: pd.Series(np.char.add("i", item.astype(str)), dtype="str"),
            RATING: rating.astype(np.float64),
            TIMESTAMP: timestamp.astype(np.int64),
            SOURCE_ROW: np.arange(row_offset, row_offset + len(user), dtype=np.int64),
        }
    )


def synthetic_interactions(cfg: IngestConfig | dict[str, Any]) -> dd.DataFrame:
    """All synthetic interactions as a lazy Dask frame, one partition per user partition.

    Built with ``dd.from_map``: nothing is generated until the frame is computed, and each
    partition is generated on its own.
    """
    import dask.dataframe as dd

    cfg = load_ingest_config(cfg)
    offsets = partition_offsets(cfg)
    return dd.from_map(
        _generate_with_offset,
        [(p, int(offsets[p])) for p in range(n_partitions(cfg))],
        cfg=cfg,
        meta=_empty_frame(),
        divisions=None,
        label="synthetic-interactions",
        enforce_metadata=False,
    )


def _generate_with_offset(part: tuple[int, int], cfg: IngestConfig) -> pd.DataFrame:
    part_index, offset = part
    return generate_partition(cfg, part_index, row_offset=offset)


def synthetic_items(cfg: IngestConfig | dict[str, Any]) -> pd.DataFrame:
    """Item metadata: ``item_id``, ``title`` (theme words + year), ``genres`` (pipe-separated,
    from the dominant factors) and ``tags`` (space-joined theme words)."""
    cfg = load_ingest_config(cfg)
    world = _item_world(cfg.seed, cfg.n_items, cfg.n_factors)
    rng = _stream(cfg.seed, _METADATA)
    words_per_theme = len(THEME_WORDS[0])
    titles, genres, tags = [], [], []
    picks = rng.integers(0, words_per_theme, (cfg.n_items, 3))
    years = rng.integers(1950, 2018, cfg.n_items)
    for i in range(cfg.n_items):
        dom, sec = int(world["dominant"][i]), int(world["secondary"][i])
        dom_words = THEME_WORDS[dom % len(THEME_WORDS)]
        other_words = THEME_WORDS[sec % len(THEME_WORDS)] if sec >= 0 else dom_words
        first, second = dom_words[picks[i, 0]], other_words[picks[i, 1]]
        if second == first:
            second = dom_words[(picks[i, 0] + 1) % words_per_theme]
        titles.append(f"The {first} {second} ({years[i]})")
        genres.append(genre_name(dom) if sec < 0 else f"{genre_name(dom)}|{genre_name(sec)}")
        tag_words = {first.lower(), dom_words[picks[i, 2]].lower()}
        tags.append(" ".join(sorted(tag_words)))
    return pd.DataFrame(
        {
            ITEM: pd.Series([f"i{i}" for i in range(cfg.n_items)], dtype="str"),
            TITLE: pd.Series(titles, dtype="str"),
            GENRES: pd.Series(genres, dtype="str"),
            TAGS: pd.Series(tags, dtype="str"),
        }
    )


@dataclass(frozen=True)
class PlantedSplit:
    """A users x items split with planted structure: ``train`` (binary) and held-out ``test``.

    ``item_features`` (items x 2*rank: the planted item tastes split into positive and negative
    parts, like genre weights) feeds content models; ``order`` ranks each user's training picks
    in time (see :mod:`pipelines.features.order`) for sequence models.
    """

    train: sp.csr_matrix
    test: sp.csr_matrix
    item_features: sp.csr_matrix
    order: sp.csr_matrix

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]


def planted_split(
    n_users: int = 300, n_items: int = 150, rank: int = 4, per_user: int = 24, test_per_user: int = 6,
    seed: int = 0, taste_weight: float = 2.0,
) -> PlantedSplit:
    """Matrix-level planted data (no frames): users pick ``per_user`` items with probability
    ~ popularity * exp(taste_weight * taste . item) (Gumbel top-k), ``test_per_user`` of them, in
    random order, held out.

    Taste outweighs popularity, so a model that learns it beats the popularity ranking: the
    model tests' contract. Seeded: the same arguments give the same split.
    """
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, rank))
    items = rng.normal(size=(n_items, rank))
    log_popularity = -0.5 * np.log(rng.permutation(n_items) + 1.0)
    keys = taste_weight * users @ items.T / np.sqrt(rank) + log_popularity + rng.gumbel(size=(n_users, n_items))
    picks = rng.permuted(np.argsort(-keys, axis=1)[:, :per_user], axis=1)  # held out at random, not the strongest
    rows = np.repeat(np.arange(n_users), per_user).reshape(n_users, per_user)
    n_train = per_user - test_per_user

    def matrix(values: np.ndarray, part: slice) -> sp.csr_matrix:
        cells = (rows[:, part].ravel(), picks[:, part].ravel())
        return sp.csr_matrix((values.ravel(), cells), shape=(n_users, n_items), dtype=np.float32)

    ones = np.ones((n_users, per_user), dtype=np.float32)
    ranks = np.tile(np.arange(1, n_train + 1, dtype=np.float32), (n_users, 1))
    return PlantedSplit(
        train=matrix(ones[:, :n_train], slice(0, n_train)),
        test=matrix(ones[:, n_train:], slice(n_train, per_user)),
        item_features=sp.csr_matrix(np.hstack([np.maximum(items, 0), np.maximum(-items, 0)]), dtype=np.float32),
        order=matrix(ranks, slice(0, n_train)),
    )
