"""The training run monitoring asks for: trained on the checked data, compared on its newest part."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import ConfigError
from pipelines.monitoring.retrain import holdout_split, retrain_conf
from pipelines.pipeline import from_params


def _frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype({"timestamp": "int64"})


def _partition(root, name, frame, source_config=None):
    """A step partition as the ingest and cleaning steps leave it (interactions/ + manifest)."""
    from pipelines.data.snapshot import write_json

    folder = root / name
    (folder / "interactions").mkdir(parents=True)
    frame.assign(rating=4.0).to_parquet(folder / "interactions" / "part.00000.parquet", index=False)
    write_json(folder / "manifest.json", {"rows": len(frame), "config": source_config or {}})
    return folder


@pytest.fixture
def checked(tmp_path):
    """A check's result: a champion trained up to t=99, current data with 40 newer rows."""
    rng = np.random.default_rng(0)
    old = _frame([(f"u{u}", f"i{rng.integers(10)}", t) for t, u in enumerate(rng.integers(0, 20, 100))])
    new = _frame([(f"u{u}", f"i{rng.integers(12)}", 100 + t) for t, u in enumerate(rng.integers(10, 30, 40))])
    snapshot = _partition(tmp_path, "clean-snapshot", old)
    source = {"source": "parquet", "path": "/lake/interactions", "conn_id": None}
    raw = _partition(tmp_path, "raw-current", pd.concat([old, new]), source)
    clean = _partition(tmp_path, "clean-current", pd.concat([old, new]))
    return {"retrain": True, "reason": "retrain: new_user_share 0.5 > 0.2",
            "champion": {"version": "1", "snapshot": {"clean_uris": [str(snapshot)]}},
            "partitions": {"raw": str(raw / "interactions"), "clean": str(clean)}}


def test_the_newest_share_of_new_rows_is_held_out():
    frame = _frame([("a", "x", t) for t in range(10)] + [("a", "y", 10 + t) for t in range(8)])
    split = holdout_split(frame, after=9, holdout_fraction=0.25)
    assert split == {"cutoff": 16, "held_out": 2, "warm_held_out": 2, "new_rows": 8}
    assert holdout_split(frame, after=17, holdout_fraction=0.25) is None  # nothing new
    cold = _frame([("a", "x", 1), ("b", "z", 5)])
    assert holdout_split(cold, after=1, holdout_fraction=0.5) is None  # no new row of a known user and item


def test_a_retrain_trains_on_the_checked_source_and_holds_out_its_newest_rows(checked):
    conf = retrain_conf(checked, {"holdout_fraction": 0.25, "params": {"models": ["itemknn"], "k": 5}})
    assert (conf["source"], conf["path"]) == ("parquet", "/lake/interactions")
    assert conf["split"] == "temporal_cutoff" and int(conf["split_cutoff"]) == 130  # the newest 10 of 40
    assert conf["max_cold_fraction"] == 1.0 and conf["models"] == ["itemknn"] and conf["k"] == 5
    assert conf["trigger_reason"].startswith("monitoring: retrain: new_user_share 0.5 > 0.2; held out: the newest 10")
    config = from_params(conf)  # a conf the training DAG accepts
    assert config.features.cutoff_epoch == 130 and config.ingest.path == "/lake/interactions"
    assert retrain_conf({**checked, "retrain": False}) is None


def test_the_form_can_override_the_split_and_refuses_unknown_parameters(checked):
    conf = retrain_conf(checked, {"params": {"split": "stratified"}})
    assert conf["split"] == "stratified"
    with pytest.raises(ConfigError, match="unknown run parameter"):
        retrain_conf(checked, {"params": {"nonsense": 1}})
    with pytest.raises(ConfigError, match="no data to train on"):
        retrain_conf({"retrain": True, "reason": "no champion", "champion": None, "partitions": None})
    conf = retrain_conf({"retrain": True, "reason": "no champion", "champion": None, "partitions": None},
                        data={"source": "csv", "path": "/x.csv"})
    assert conf == {"source": "csv", "path": "/x.csv",
                    "trigger_reason": "monitoring: no champion; held out by the form's default split"}
