"""Item content features from metadata: genres multi-hot, TF-IDF of titles and of tags.

Blocks are stacked side by side (genres | title words | tag words), each row is L2-normalised,
and row ``i`` belongs to ``item_idx == i``. Items without metadata (or with empty metadata) get
an all-zero row; metadata for items outside the encoding is ignored. Feature names carry their
block as a prefix: ``genre=Comedy``, ``title=toy``, ``tag=funny``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import MultiLabelBinarizer, normalize

from pipelines.constants import GENRES, ITEM, ITEM_IDX, TAGS, TITLE
from pipelines.errors import DataError

NO_GENRES = "(no genres listed)"  # MovieLens' placeholder: carries no information
_YEAR = re.compile(r"\(\s*\d{4}\s*\)")


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
    if ITEM not in items.columns:
        raise DataError(f"item metadata has no column {ITEM!r} (columns: {list(items.columns)})")
    if max_features < 1:
        raise ValueError(f"max_features must be >= 1, got {max_features}")
    ids = items[ITEM].astype(str)
    repeated = ids[ids.duplicated()]
    if len(repeated):
        raise DataError(
            f"item metadata repeats item_id {repeated.iloc[0]!r} ({len(repeated)} repeated rows)"
        )
    n_items = len(item_index)
    index = item_index[[ITEM, ITEM_IDX]].assign(**{ITEM: item_index[ITEM].astype(str)})
    meta = items.assign(**{ITEM: ids}).merge(index, on=ITEM, how="inner").sort_values(ITEM_IDX)
    rows = meta[ITEM_IDX].to_numpy(dtype=np.int64)

    blocks: list[sp.csr_matrix] = []
    names: list[str] = []
    if GENRES in meta.columns:
        _add_genres(meta[GENRES], blocks, names)
    if TITLE in meta.columns:
        _add_tfidf(meta[TITLE].map(clean_title), "title", max_features, blocks, names)
    if TAGS in meta.columns:
        tags = meta[TAGS].map(lambda v: v if isinstance(v, str) else "")
        _add_tfidf(tags, "tag", max_features, blocks, names)

    if not blocks:
        return sp.csr_matrix((n_items, 0), dtype=np.float32), []
    stacked = normalize(sp.hstack(blocks, format="csr").astype(np.float64), norm="l2", axis=1)
    # Scatter the metadata rows onto their item_idx rows; the others stay zero.
    placement = sp.csr_matrix(
        (np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(n_items, len(rows))
    )
    features = (placement @ stacked).tocsr().astype(np.float32)
    features.sort_indices()
    return features, names


def _add_genres(column: pd.Series, blocks: list, names: list[str]) -> None:
    genre_lists = column.map(split_genres).tolist()
    binarizer = MultiLabelBinarizer(sparse_output=True)
    matrix = binarizer.fit_transform(genre_lists)
    if matrix.shape[1]:
        blocks.append(sp.csr_matrix(matrix, dtype=np.float64))
        names.extend(f"genre={g}" for g in binarizer.classes_)


def _add_tfidf(
    texts: pd.Series, prefix: str, max_features: int, blocks: list, names: list[str]
) -> None:
    docs = texts.fillna("").astype(str).tolist()
    vectorizer = TfidfVectorizer(max_features=max_features, dtype=np.float64)
    try:
        matrix = vectorizer.fit_transform(docs)
    except ValueError as exc:
        # sklearn refuses an empty vocabulary (every text blank or one-letter words): no block.
        if "empty vocabulary" in str(exc):
            return
        raise
    blocks.append(matrix.tocsr())
    names.extend(f"{prefix}={term}" for term in vectorizer.get_feature_names_out())
