"""A seeded generator of interactions with planted structure a recommender can learn.

The world: every item has a taste vector dominated by one latent factor (sometimes two), a
Zipf-like popularity and a quality; every user has a taste vector that likes one or two
factors. A user's pick comes, with probability TASTE_SHARE, from one of the factors the user
likes (chosen in proportion to how much), drawn over the catalogue with weight
popularity x exp(TASTE_WEIGHT x the item's loading on that factor); otherwise from popularity
alone. Picks are distinct per user (successive sampling). Ratings follow the affinity
taste . item plus noise (0.5..5.0 in half steps), at times spread over three years. Item
metadata (title words, genres, tags) comes from the item's dominant factors, so content
carries signal too.

Why a mixture and not popularity x exp(taste . item) per user: that needs a users x items
score block (about 5 us a row); the mixture draws from n_factors + 1 per-item distributions by
binary search, O(rows x log items), with the same planted low-rank taste.

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
TASTE_WEIGHT = 4.0  # how strongly an item's loading on a factor lifts it among that factor's picks
TASTE_SHARE = 0.9  # share of picks that follow the user's taste rather than popularity alone
_SAMPLING_ROUNDS = 32  # rounds of draws with replacement before the exact fallback
_TABLE_SLOTS_PER_ITEM = 8  # lookup-table slots per item and pick distribution: most draws one read
_TABLE_MAX_CELLS = 1 << 25  # caps the lookup tables (int32 cells) for huge catalogues

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
    """Item factors, dominant factors, popularity logits, quality, and the pick distributions.

    ``pick_probs`` (1 + n_factors, n_items): row 0 is popularity alone, row 1 + f is
    popularity x exp(TASTE_WEIGHT x loading on factor f), each normalised; ``pick_table`` and
    ``pick_rest_cdf`` draw from them (see :func:`_draw_items`). All arrays are read-only.
    """
    rng = _stream(seed, _ITEMS)
    dominant = rng.integers(0, n_factors, n_items)
    secondary = rng.integers(0, n_factors, n_items)
    has_secondary = (rng.random(n_items) < 0.5) & (secondary != dominant)
    factors = rng.normal(0.0, 0.25, (n_items, n_factors))
    factors[np.arange(n_items), dominant] += 1.0
    factors[np.arange(n_items)[has_secondary], secondary[has_secondary]] += 0.5
    rank = rng.permutation(n_items) + 1  # popularity rank, 1 = most popular
    pop_logit = -ZIPF_EXPONENT * np.log(rank)
    logits = np.vstack([pop_logit[None, :], pop_logit[None, :] + TASTE_WEIGHT * factors.T])
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    world = {
        "factors": factors,
        "dominant": dominant,
        "secondary": np.where(has_secondary, secondary, -1),
        "pop_logit": pop_logit,
        "quality": rng.normal(0.0, 0.3, n_items),
        "factors32": factors.astype(np.float32),
        "pick_probs": probs,
        **_lookup_tables(probs),
    }
    for array in world.values():
        array.setflags(write=False)
    return world


def _lookup_tables(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Tables that draw from each row of ``probs`` in O(1) (Marsaglia's condensed table method).

    Row c's table holds item i floor(p_ci x slots) times, padded with -1 up to ``slots``; a
    uniform slot that lands on an item is a draw, one that lands on padding (probability
    sum_i of the remainders r_ci = p_ci - floor(p_ci x slots) / slots) draws from the remainders
    by binary search (``pick_rest_cdf``: their CDFs end to end, row c shifted by c). Both parts
    together give p_ci exactly, with one random read for most draws.
    """
    n_rows, n_items = probs.shape
    slots = n_items * max(1, min(_TABLE_SLOTS_PER_ITEM, _TABLE_MAX_CELLS // (n_rows * n_items)))
    copies = np.floor(probs * slots).astype(np.int64)
    table = np.full((n_rows, slots), -1, dtype=np.int32)
    for row in range(n_rows):
        filled = np.repeat(np.arange(n_items, dtype=np.int32), copies[row])
        table[row, : len(filled)] = filled
    rest = np.maximum(probs - copies / slots, 0.0) + 1e-300  # never all zero: a CDF to divide by
    rest_cdf = np.cumsum(rest, axis=1)
    rest_cdf /= rest_cdf[:, -1:]
    return {"pick_table": table, "pick_rest_cdf": (rest_cdf + np.arange(n_rows)[:, None]).ravel()}


def _draw_items(world: dict[str, np.ndarray], component: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One item per entry of ``component``, drawn from ``world["pick_probs"][component]``."""
    table = world["pick_table"]
    slots = table.shape[1]
    cell = component * slots + (rng.random(len(component)) * slots).astype(np.int64)
    item = table.ravel().take(cell).astype(np.int64)
    missed = np.flatnonzero(item < 0)
    if len(missed):
        n_items = world["pick_probs"].shape[1]
        item[missed] = _shifted_search(world["pick_rest_cdf"], component[missed], n_items, rng, in_order=False)
    return item


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


def _shifted_search(
    shifted_cdf: np.ndarray, row: np.ndarray, width: int, rng: np.random.Generator, in_order: bool = True
) -> np.ndarray:
    """One draw per entry of ``row`` from that row's CDF (rows of ``width`` laid end to end, row r
    shifted by r): the column drawn.

    Binary searches are cache-bound: queries that arrive out of order (``in_order=False``) are
    searched sorted and scattered back, which costs less than searching them as they come.
    """
    query = row + rng.random(len(row))
    if in_order:
        found = np.searchsorted(shifted_cdf, query, side="right")
    else:
        order = np.argsort(query)
        found = np.empty(len(query), dtype=np.int64)
        found[order] = np.searchsorted(shifted_cdf, query[order], side="right")
    return np.minimum(found - row * width, width - 1)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct ``values``, sorted (a sort and a mask: faster here than ``np.unique``'s hashing).

    The keys arrive as a few runs ascending by user: the stable sort (timsort) exploits that.
    """
    values = np.sort(values, kind="stable")
    return values[np.concatenate([[True], values[1:] != values[:-1]])]


def _sorted_contains(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Whether each of ``needles`` is in the sorted array ``haystack``."""
    if len(haystack) == 0:
        return np.zeros(len(needles), dtype=bool)
    return haystack[np.minimum(np.searchsorted(haystack, needles), len(haystack) - 1)] == needles


def _distinct_picks(
    components: np.ndarray, weights: np.ndarray, world: dict[str, np.ndarray], counts: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Per user r, ``counts[r]`` distinct items drawn without replacement from the mixture
    sum_k ``weights[r, k]`` x ``world["pick_probs"][components[r, k]]`` (weights sum to one per
    row): (row numbers, items), sorted by row then item.

    Successive sampling in rounds: each round draws, with replacement, exactly as many picks as
    a user still lacks and keeps the new distinct ones. Those draws are the next stretch of an
    endless with-replacement stream, and keeping every new item of a stretch never overshoots,
    so the result is the stream's first ``counts[r]`` distinct items: the successive-sampling
    distribution. Users still short after a few rounds (weights concentrated on few items)
    finish with Gumbel-top-k over the items left, exact too.
    """
    n_rows = len(counts)
    n_items = world["pick_probs"].shape[1]
    first = np.zeros(0, dtype=np.int64)  # keys row * n_items + item kept in round one, sorted
    later = np.zeros(0, dtype=np.int64)  # keys kept since (far fewer), sorted
    need = counts.astype(np.int64).copy()
    for _ in range(_SAMPLING_ROUNDS):
        active = np.flatnonzero(need > 0)
        if len(active) == 0:
            break
        # How many of a user's draws each mixture part gets, then the draws part by part.
        per_part = rng.multinomial(need[active], weights[active])
        row = np.concatenate([np.repeat(active, per_part[:, k]) for k in range(per_part.shape[1])])
        component = np.concatenate([np.repeat(components[active, k], per_part[:, k]) for k in range(per_part.shape[1])])
        keys = _sorted_unique(row * n_items + _draw_items(world, component, rng))
        if len(first) == 0:
            first = keys
        else:
            keys = keys[~(_sorted_contains(first, keys) | _sorted_contains(later, keys))]
            later = np.sort(np.concatenate([later, keys]), kind="stable")  # two sorted runs: a merge
        need -= np.diff(np.searchsorted(keys, np.arange(n_rows + 1) * n_items))  # kept per user
    taken = np.sort(np.concatenate([first, later]), kind="stable")
    rows, cols = np.divmod(taken, n_items)
    if need.any():
        short = np.flatnonzero(need > 0)
        with np.errstate(divide="ignore"):
            mixed = np.einsum("rk,rki->ri", weights[short], world["pick_probs"][components[short]])
            keys = np.log(mixed) + rng.gumbel(size=(len(short), n_items))
        in_short = np.isin(rows, short)
        keys[np.searchsorted(short, rows[in_short]), cols[in_short]] = -np.inf  # already drawn
        extra_rows, extra_cols = _top_k_rows(keys, need[short])
        rows = np.concatenate([rows, short[extra_rows]])
        cols = np.concatenate([cols, extra_cols])
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
    return rows, cols


def _sorted_uniforms(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per segment of ``counts[r]`` entries, that many uniforms on [0, 1) in increasing order.

    The order statistics of n uniforms are the normalised partial sums of n + 1 exponential
    spacings: no sort needed.
    """
    spacings = rng.standard_exponential(int(counts.sum()))
    ends = np.cumsum(counts)
    partial = np.cumsum(spacings)
    before = np.concatenate([[0.0], partial[ends[:-1] - 1]])  # sum over earlier segments
    within = partial - np.repeat(before, counts)
    total = within[ends - 1] + rng.standard_exponential(len(counts))
    return within / np.repeat(total, counts)


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


@lru_cache(maxsize=8)
def _item_names(n_items: int) -> Any:
    """``"i0" .. "i<n_items - 1>"`` as an Arrow string array (taken per row, never formatted per row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.binary_join_element_wise("i", pc.cast(pa.array(np.arange(n_items)), pa.string()), "")


def generate_partition(
    cfg: IngestConfig | dict[str, Any], part_index: int, row_offset: int | None = None
) -> pd.DataFrame:
    """Interactions of the users in partition ``part_index`` (deterministic from seed and index).

    Returns a frame with ``user_id`` ("u<n>"), ``item_id`` ("i<n>"), ``rating`` (float64),
    ``timestamp`` (int64 epoch seconds) and ``source_row`` (global row number; computed from
    the earlier partitions' counts when ``row_offset`` is None), each user's events in time order.

    Raises:
        IndexError: ``part_index`` is outside [0, n_partitions).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

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
    # Every user likes one factor (weight 1) and half of them a second one (weight 0.7).
    liked = rng.integers(0, f, (n_users, 2))
    liking = np.column_stack([np.ones(n_users), np.where(rng.random(n_users) < 0.5, 0.7, 0.0)])
    tastes = rng.normal(0.0, 0.25, (n_users, f))
    np.add.at(tastes, (np.arange(n_users)[:, None], liked), liking)
    user_bias = rng.normal(0.0, 0.3, n_users)
    # Picks mix popularity alone (pick distribution 0) and the liked factors' (1 + factor),
    # which share TASTE_SHARE in proportion to liking.
    components = np.column_stack([np.zeros(n_users, dtype=np.int64), 1 + liked])
    weights = np.column_stack([np.full(n_users, 1.0 - TASTE_SHARE), TASTE_SHARE * liking / liking.sum(axis=1, keepdims=True)])
    user, item = _distinct_picks(components, weights, world, counts, rng)

    # Picks arrive sorted by item within each user: shuffle them within the user (user + a
    # uniform is nearly sorted: the stable sort is fast), then give them the user's times in
    # increasing order (sorted uniforms over the user's active span).
    item = item[np.argsort(user + rng.random(len(user)), kind="stable")]
    # float32 halves the row-sized copies; ratings are rounded to half steps anyway.
    affinity = np.einsum("ij,ij->i", np.repeat(tastes.astype(np.float32), counts, axis=0), world["factors32"][item])
    raw = 3.0 + 1.2 * (affinity - 0.3) + world["quality"][item] + np.repeat(user_bias, counts)
    rating = np.clip(np.rint((raw + rng.normal(0.0, 0.4, len(raw))) * 2) / 2, 0.5, 5.0)
    first_seen = TIME_START + rng.integers(0, int(TIME_SPAN * 0.8), n_users)
    active_for = np.minimum(rng.exponential(TIME_SPAN / 6, n_users), TIME_START + TIME_SPAN - first_seen)
    timestamp = np.repeat(first_seen, counts) + (_sorted_uniforms(counts, rng) * np.repeat(active_for, counts)).astype(np.int64)

    user_names = pc.binary_join_element_wise(
        "u", pc.cast(pa.array(np.arange(first_user, first_user + n_users)), pa.string()), ""
    )
    table = pa.table(
        {
            USER: pc.take(user_names, pa.array(user)),
            ITEM: pc.take(_item_names(cfg.n_items), pa.array(item)),
            RATING: rating.astype(np.float64),
            TIMESTAMP: timestamp.astype(np.int64),
            SOURCE_ROW: np.arange(row_offset, row_offset + len(user), dtype=np.int64),
        }
    )
    return table.to_pandas()


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
    picks = rng.integers(0, words_per_theme, (cfg.n_items, 3)).tolist()
    years = rng.integers(1950, 2018, cfg.n_items).tolist()
    names = [genre_name(factor) for factor in range(cfg.n_factors)]
    # Plain Python ints in the loop: indexing NumPy arrays per item costs more than the work.
    for dom, sec, (pick_first, pick_second, pick_tag), year in zip(
        world["dominant"].tolist(), world["secondary"].tolist(), picks, years
    ):
        dom_words = THEME_WORDS[dom % len(THEME_WORDS)]
        other_words = THEME_WORDS[sec % len(THEME_WORDS)] if sec >= 0 else dom_words
        first, second = dom_words[pick_first], other_words[pick_second]
        if second == first:
            second = dom_words[(pick_first + 1) % words_per_theme]
        titles.append(f"The {first} {second} ({year})")
        genres.append(names[dom] if sec < 0 else f"{names[dom]}|{names[sec]}")
        tag_words = {first.lower(), dom_words[pick_tag].lower()}
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
