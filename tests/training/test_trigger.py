"""Why a training run started, and what an Asset-triggered run trains on."""

from __future__ import annotations

import pytest

from pipelines import steps
from pipelines.constants import CHAMPION_ASSET_URI, INTERACTIONS_ASSET_URI, RETRAIN_ASSET_URI
from pipelines.data.landing import landing_folder
from pipelines.errors import ConfigError
from pipelines.pipeline import from_params
from pipelines.training.trigger import resolve_trigger

INGESTED = {"uri": INTERACTIONS_ASSET_URI, "source_dag_id": "recsys_ingest_events", "source_run_id": "r1",
            "timestamp": "2026-06-01T10:00:00+00:00",
            "extra": {"source": "parquet", "path": "/lake/interactions", "rows": 12, "file": "/lake/interactions/e.parquet"}}
WATCHED = {"uri": INTERACTIONS_ASSET_URI, "source_dag_id": None, "source_run_id": None,
           "timestamp": "2026-06-01T11:00:00+00:00", "extra": {"from_trigger": True, "payload": True}}


def test_an_asset_triggered_run_trains_on_the_data_its_newest_event_names(tmp_path):
    params, trigger = resolve_trigger({"source": "synthetic"}, "asset_triggered", [INGESTED], str(tmp_path))
    assert (params["source"], params["path"]) == ("parquet", "/lake/interactions")
    assert trigger["kind"] == "asset_triggered"
    assert "recsys_ingest_events" in trigger["reason"] and "12 new rows" in trigger["reason"]
    assert trigger["asset_events"][0]["rows"] == 12

    # A file landed (the watcher's event carries no path): the run's own landing folder.
    params, trigger = resolve_trigger({}, "DagRunType.ASSET_TRIGGERED", [INGESTED, WATCHED], str(tmp_path))
    assert (params["source"], params["path"]) == ("parquet", str(landing_folder(tmp_path)))
    assert "file landed" in trigger["reason"] and len(trigger["asset_events"]) == 2


def test_a_conf_and_its_reason_win_outside_asset_runs(tmp_path):
    conf = {"source": "csv", "path": "/data/x.csv", "trigger_reason": "  monitoring: new users  "}
    params, trigger = resolve_trigger(conf, "manual", [INGESTED], str(tmp_path))
    assert (params["source"], params["path"]) == ("csv", "/data/x.csv")
    assert trigger == {"kind": "manual", "reason": "monitoring: new users", "asset_events": trigger["asset_events"]}
    assert resolve_trigger({}, "scheduled", [], str(tmp_path))[1]["reason"].startswith("schedule")
    other = {**INGESTED, "uri": CHAMPION_ASSET_URI}
    params, trigger = resolve_trigger({"source": "synthetic"}, "asset_triggered", [other], str(tmp_path))
    assert params["source"] == "synthetic" and "not of the interactions Asset" in trigger["reason"]


def test_the_plan_carries_the_trigger_and_the_parent_run_records_it(tmp_path, mlflow_home):
    import mlflow

    plan = steps.plan({"models": ["popularity"]}, "asset__1", lake_root=str(tmp_path / "lake"),
                      run_type="asset_triggered", asset_events=[INGESTED])
    assert plan["config"]["ingest"]["source"] == "parquet" and plan["config"]["ingest"]["path"] == "/lake/interactions"
    tracking = steps.open_run(plan)
    tags = mlflow.MlflowClient(mlflow_home).get_run(tracking["parent_run_id"]).data.tags
    assert tags["trigger_kind"] == "asset_triggered" and tags["trigger_reason"] == plan["trigger"]["reason"]


def test_split_cutoff_reaches_the_temporal_split_and_is_required_by_it():
    config = from_params({"split": "temporal_cutoff", "split_cutoff": "2004-06-11", "max_cold_fraction": 1.0})
    assert config.features.cutoff_epoch == 1086912000 and config.features.max_cold_fraction == 1.0
    with pytest.raises(ConfigError, match="cutoff is required"):
        from_params({"split": "temporal_cutoff"})
    with pytest.raises(ConfigError, match="trigger_reason"):
        from_params({"trigger_reason": "x" * 501})


REQUESTED = {"uri": RETRAIN_ASSET_URI, "source_dag_id": "recsys_monitoring", "source_run_id": "m1",
             "timestamp": "2026-06-01T12:00:00+00:00",
             "extra": {"reason": "monitoring: drift", "conf": {"source": "parquet", "path": "/lake/interactions",
                                                               "split": "temporal_cutoff", "split_cutoff": "130",
                                                               "trigger_reason": "monitoring: drift"}}}


def test_a_retrain_request_sets_the_run_and_wins_over_a_landing_in_the_same_run(tmp_path):
    params, trigger = resolve_trigger({}, "asset_triggered", [WATCHED, REQUESTED], str(tmp_path))
    assert (params["path"], params["split"], params["split_cutoff"]) == ("/lake/interactions", "temporal_cutoff", "130")
    assert trigger["reason"] == "monitoring: drift" and [e["uri"] for e in trigger["asset_events"]] == [
        INTERACTIONS_ASSET_URI, RETRAIN_ASSET_URI]
    assert from_params(params).features.cutoff_epoch == 130
    bad = {**REQUESTED, "extra": {"conf": ["not", "an", "object"]}}
    with pytest.raises(ConfigError, match="extra.conf must be an object"):
        resolve_trigger({}, "asset_triggered", [bad], str(tmp_path))
