"""Item content features from metadata: genres multi-hot, TF-IDF of titles and of tags.

Blocks are stacked side by side (genres | title words | tag words), each row is L2-normalised,
and row ``i`` belongs to ``item_idx == i``. Items without metadata (or with empty metadata) get
an all-zero row; metadata for items outside the encoding is ignored. Feature names carry their
block as a prefix: ``genre=Comedy``, ``title=toy``, ``tag=funny``.

:class:`ContentFeaturizer` keeps what fitting learnt (the genre list, each text block's vocabulary
and IDF weights) so items that arrive after training are featurized into the same columns: the
serving bundle uses it to make new items recommendable by content models. It saves to plain
JSON + NPZ files (no pickle).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize

from pipelines.constants import GENRES, ITEM, ITEM_IDX, TAGS, TITLE
from pipelines.errors import DataError

NO_GENRES = "(no genres listed)"  # MovieLens' placeholder: carries no information
_YEAR = re.compile(r"\(\s*\d{4}\s*\)")
FEATURIZER_JSON = "content_featurizer.json"
FEATURIZER_NPZ = "content_featurizer.npz"
_FORMAT_VERSION = 1


def split_genres(value: object) -> list[str]:
    """``"Action|Comedy"`` -> ``["Action", "Comedy"]``, without blanks or MovieLens' placeholder."""
    if not isinstance(value, str):
        return []
    return [g.strip() for g in value.split("|") if g.strip() and g.strip() != NO_GENRES]


def clean_title(value: object) -> str:
    """A title without years in parentheses: ``"Toy Story (1995)"`` -> ``"Toy Story"``."""
    if not isinstance(value, str):
        return ""
    return " ".join(_YEAR.sub(" ", value).split())


def item_content_features(
    items: pd.DataFrame, item_index: pd.DataFrame, max_features: int = 5000
) -> tuple[sp.csr_matrix, list[str]]:
    """Content features aligned to ``item_index``.

    Takes the item metadata frame (``item_id`` and any of ``title``, ``genres``, ``tags``) and the
    encoding (``item_id``, ``item_idx``). Returns ``(features, names)``: a float32 CSR of shape
    ``(n_items, n_features)`` with L2-normalised rows, and the name of each column. Each TF-IDF
    block keeps at most ``max_features`` terms. Raises DataError when ``item_id`` is missing or
    repeated in ``items``.
    """
    features, featurizer = fit_item_content_features(items, item_index, max_features)
    return features, featurizer.feature_names


def fit_item_content_features(
    items: pd.DataFrame, item_index: pd.DataFrame, max_features: int = 5000
) -> tuple[sp.csr_matrix, "ContentFeaturizer"]:
    """Like :func:`item_content_features`, returning the fitted :class:`ContentFeaturizer`.

    The featurizer learns from the metadata of encoded items only. Returns ``(features,
    featurizer)``; raises as :func:`item_content_features` does.
    """
    if max_features < 1:
        raise ValueError(f"max_features must be >= 1, got {max_features}")
    _check_item_ids(items)
    n_items = len(item_index)
    index = item_index[[ITEM, ITEM_IDX]].assign(**{ITEM: item_index[ITEM].astype(str)})
    meta = items.assign(**{ITEM: items[ITEM].astype(str)}).merge(index, on=ITEM, how="inner")
    meta = meta.sort_values(ITEM_IDX)
    rows = meta[ITEM_IDX].to_numpy(dtype=np.int64)
    featurizer = ContentFeaturizer(max_features).fit(meta)
    stacked = featurizer.transform(meta)
    # Scatter the metadata rows onto their item_idx rows; the others stay zero.
    placement = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, np.arange(len(rows)))), shape=(n_items, len(rows))
    )
    features = (placement @ stacked).tocsr().astype(np.float32)
    features.sort_indices()
    return features, featurizer


@dataclass(frozen=True)
class _TextBlock:
    """A fitted TF-IDF block: its name prefix, vocabulary (column order) and IDF weights."""

    prefix: str
    terms: list[str]
    idf: np.ndarray


class ContentFeaturizer:
    """Fitted content featurization: genres multi-hot | TF-IDF of titles | TF-IDF of tags.

    :meth:`fit` learns the genre list and, per text block, the vocabulary (at most
    ``max_features`` terms) and IDF weights, exactly as :func:`item_content_features` computes
    them. :meth:`transform` then maps any metadata rows, including items never seen at fit
    time, into the same columns: unknown genres and words are ignored. Each text block is
    L2-normalised (as scikit-learn's ``TfidfVectorizer``), then each whole row.
    """

    def __init__(self, max_features: int = 5000) -> None:
        if max_features < 1:
            raise ValueError(f"max_features must be >= 1, got {max_features}")
        self.max_features = max_features
        self.genres: list[str] | None = None  # None: no genre block
        self.text_blocks: list[_TextBlock] = []
        self.fitted = False

    @property
    def feature_names(self) -> list[str]:
        """Column names: ``genre=<g>``, then ``title=<term>``, then ``tag=<term>``."""
        names = [f"genre={g}" for g in self.genres or []]
        for block in self.text_blocks:
            names.extend(f"{block.prefix}={term}" for term in block.terms)
        return names

    @property
    def n_features(self) -> int:
        return len(self.genres or []) + sum(len(b.terms) for b in self.text_blocks)

    def fit(self, items: pd.DataFrame) -> "ContentFeaturizer":
        """Learn the blocks from a metadata frame (any of ``genres``, ``title``, ``tags``); returns self."""
        self.genres, self.text_blocks = None, []
        if GENRES in items.columns:
            found = sorted({g for genres in items[GENRES].map(split_genres) for g in genres})
            self.genres = found or None
        for column, prefix in _TEXT_COLUMNS:
            if column in items.columns:
                block = _fit_tfidf(_texts(items[column], column), prefix, self.max_features)
                if block is not None:
                    self.text_blocks.append(block)
        self.fitted = True
        return self

    def transform(self, items: pd.DataFrame) -> sp.csr_matrix:
        """Float32 CSR (len(items), n_features), one L2-normalised row per metadata row, in order.

        Columns absent from ``items`` leave their block at zero; a row with no known genre or
        word is all zero. Raises RuntimeError before :meth:`fit`.
        """
        if not self.fitted:
            raise RuntimeError("ContentFeaturizer must be fit() (or loaded) before transform()")
        n_rows = len(items)
        blocks: list[sp.csr_matrix] = []
        if self.genres is not None:
            blocks.append(_genre_matrix(items, self.genres))
        for block in self.text_blocks:
            column = _PREFIX_COLUMNS[block.prefix]
            if column not in items.columns:
                blocks.append(sp.csr_matrix((n_rows, len(block.terms))))
                continue
            counts = CountVectorizer(vocabulary=block.terms).transform(_texts(items[column], column))
            weighted = counts.astype(np.float64) @ sp.diags(block.idf)
            blocks.append(normalize(weighted, norm="l2", axis=1))
        if not blocks:
            return sp.csr_matrix((n_rows, 0), dtype=np.float32)
        stacked = normalize(sp.hstack(blocks, format="csr").astype(np.float64), norm="l2", axis=1)
        features = stacked.astype(np.float32).tocsr()
        features.sort_indices()
        return features

    # -- persistence --------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``content_featurizer.json`` (genres, vocabularies) and ``.npz`` (IDF) into ``folder``."""
        if not self.fitted:
            raise RuntimeError("ContentFeaturizer must be fit() before save()")
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": _FORMAT_VERSION,
            "max_features": self.max_features,
            "genres": self.genres,
            "text_blocks": [{"prefix": b.prefix, "terms": b.terms} for b in self.text_blocks],
        }
        (path / FEATURIZER_JSON).write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
        np.savez(path / FEATURIZER_NPZ, **{f"idf_{b.prefix}": b.idf for b in self.text_blocks})
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "ContentFeaturizer":
        """Read a featurizer written by :meth:`save`; DataError names a missing or foreign file."""
        path = Path(folder)
        for name in (FEATURIZER_JSON, FEATURIZER_NPZ):
            if not (path / name).is_file():
                raise DataError(f"{path} holds no content featurizer ({name} is missing)")
        meta = json.loads((path / FEATURIZER_JSON).read_text())
        if meta.get("format_version") != _FORMAT_VERSION:
            raise DataError(f"{path / FEATURIZER_JSON}: unsupported format_version {meta.get('format_version')!r}")
        featurizer = cls(int(meta["max_features"]))
        featurizer.genres = meta["genres"]
        with np.load(path / FEATURIZER_NPZ, allow_pickle=False) as arrays:
            for block in meta["text_blocks"]:
                idf = arrays[f"idf_{block['prefix']}"]
                if len(idf) != len(block["terms"]):
                    raise DataError(f"{path}: block {block['prefix']!r} has {len(block['terms'])} terms but {len(idf)} IDF weights")
                featurizer.text_blocks.append(_TextBlock(block["prefix"], list(block["terms"]), idf))
        featurizer.fitted = True
        return featurizer


_TEXT_COLUMNS = ((TITLE, "title"), (TAGS, "tag"))
_PREFIX_COLUMNS = {prefix: column for column, prefix in _TEXT_COLUMNS}


def _check_item_ids(items: pd.DataFrame) -> None:
    if ITEM not in items.columns:
        raise DataError(f"item metadata has no column {ITEM!r} (columns: {list(items.columns)})")
    ids = items[ITEM].astype(str)
    repeated = ids[ids.duplicated()]
    if len(repeated):
        raise DataError(
            f"item metadata repeats item_id {repeated.iloc[0]!r} ({len(repeated)} repeated rows)"
        )


def _texts(column: pd.Series, name: str) -> list[str]:
    """The documents of a text column: titles lose their years, missing values become ''."""
    if name == TITLE:
        return column.map(clean_title).tolist()
    return [value if isinstance(value, str) else "" for value in column]


def _fit_tfidf(docs: list[str], prefix: str, max_features: int) -> _TextBlock | None:
    vectorizer = TfidfVectorizer(max_features=max_features, dtype=np.float64)
    try:
        vectorizer.fit(docs)
    except ValueError as exc:
        # sklearn refuses an empty vocabulary (every text blank or one-letter words): no block.
        if "empty vocabulary" in str(exc):
            return None
        raise
    terms = [str(t) for t in vectorizer.get_feature_names_out()]
    return _TextBlock(prefix, terms, np.asarray(vectorizer.idf_, dtype=np.float64))


def _genre_matrix(items: pd.DataFrame, genres: list[str]) -> sp.csr_matrix:
    """Multi-hot rows over the fitted ``genres``; unknown genres are ignored."""
    column_of = {g: j for j, g in enumerate(genres)}
    rows, cols = [], []
    if GENRES in items.columns:
        for row, value in enumerate(items[GENRES]):
            for genre in split_genres(value):
                if genre in column_of:
                    rows.append(row)
                    cols.append(column_of[genre])
    matrix = sp.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(items), len(genres)), dtype=np.float64
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # a genre listed twice is still one genre
    return matrix
