"""Item content features: blocks, names, alignment to item_idx, normalisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import DataError
from pipelines.features.content import clean_title, item_content_features, split_genres


def test_parsers() -> None:
    assert split_genres("Action|Comedy") == ["Action", "Comedy"]
    assert split_genres("(no genres listed)") == [] and split_genres(None) == []
    assert clean_title("Toy Story (1995)") == "Toy Story"
    assert clean_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)") == (
        "City of Lost Children, The (Cité des enfants perdus, La)"
    )


def test_features_align_to_item_idx() -> None:
    index = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "item_idx": np.arange(4, dtype=np.int32)})
    items = pd.DataFrame(
        {
            "item_id": ["d", "b", "a", "zzz"],  # shuffled, one unknown item, "c" has no metadata
            "title": ["Robot Dream (1999)", "Space War (1977)", "Love Story (1970)", "Other (2000)"],
            "genres": ["Sci-Fi", "Action|Sci-Fi", "(no genres listed)", "Drama"],
            "tags": ["robot", "", None, "x"],
        }
    )
    features, names = item_content_features(items, index)
    assert features.shape == (4, len(names)) and features.dtype == np.float32
    assert [n for n in names if n.startswith("genre=")] == ["genre=Action", "genre=Sci-Fi"]
    assert "title=1999" not in names and "title=robot" in names and "tag=robot" in names
    dense = pd.DataFrame(features.toarray(), columns=names)
    assert dense.loc[2].abs().sum() == 0  # "c": no metadata -> zero row
    assert dense.loc[1, "genre=Action"] > 0 and dense.loc[3, "genre=Action"] == 0
    assert dense.loc[0, "genre=Action"] == 0 and dense.loc[0, "title=love"] > 0
    assert np.allclose(np.linalg.norm(features.toarray()[[0, 1, 3]], axis=1), 1.0)


def test_max_features_caps_each_text_block() -> None:
    index = pd.DataFrame({"item_id": ["a", "b"], "item_idx": [0, 1]})
    items = pd.DataFrame({"item_id": ["a", "b"], "title": ["one two three", "four five six"], "tags": ["p q", "rr ss tt"]})
    _, names = item_content_features(items, index, max_features=2)
    assert sum(n.startswith("title=") for n in names) == 2 and sum(n.startswith("tag=") for n in names) == 2


def test_empty_text_and_duplicates() -> None:
    index = pd.DataFrame({"item_id": ["a", "b"], "item_idx": [0, 1]})
    features, names = item_content_features(pd.DataFrame({"item_id": ["a"], "tags": [""]}), index)
    assert features.shape == (2, 0) and names == []
    with pytest.raises(DataError, match="repeats item_id 'a'"):
        item_content_features(pd.DataFrame({"item_id": ["a", "a"], "title": ["x", "y"]}), index)
