"""``monitor()`` without a champion, a retried check, and the command line's refusals."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import mlflow
import pytest

from pipelines.errors import DataError
from pipelines.monitoring.run import RESULT_KEYS, monitor, snapshot_partitions
from pipelines.serving.tables import make_engine, request_log


def test_no_champion_asks_for_training_and_still_measures_the_service(mlflow_home, tmp_path):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    end = datetime(2026, 6, 1, tzinfo=timezone.utc)
    engine = make_engine(url)
    with engine.begin() as conn:  # 200 answers, 10 of them errors: above the 1% error ceiling
        conn.execute(request_log.insert(), [
            {"at": end - timedelta(minutes=i + 1), "request_id": f"r{i}", "endpoint": "get", "user_id": "u", "k": 10,
             "source": "popularity", "model_name": "nobody", "model_version": "", "items": 10,
             "latency_ms": 2.0, "status": 503 if i < 10 else 200} for i in range(200)])
    engine.dispose()
    config = {"registered_model": "nobody", "database_url": url, "window_end": end, "tracking_uri": mlflow_home}
    first = monitor(config, "check-1")
    again = monitor(config, "check-1")  # a retry replaces the run

    assert tuple(again) == RESULT_KEYS and again["champion"] is None and again["partitions"] is None
    assert again["retrain"] is True and again["alert"] is True
    assert again["reason"] == "no champion: nobody@champion does not exist. alert: error_rate 0.05 > 0.01"
    assert again["measures"]["requests"] == 200 and again["window"]["end"] == end.isoformat()
    client = mlflow.MlflowClient(mlflow_home)
    experiment = client.get_experiment_by_name("monitoring")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`recsys.run_key` = 'check-1'")
    assert [run.info.run_id for run in runs] == [again["mlflow_run_id"]] != [first["mlflow_run_id"]]
    assert runs[0].data.metrics["error_rate"] == pytest.approx(0.05) and runs[0].data.metrics["retrain"] == 1.0


def test_a_snapshot_gone_from_the_lake_is_named(tmp_path):
    with pytest.raises(DataError, match="not in the lake any more.*raw_gone"):
        snapshot_partitions(str(tmp_path / "features" / "k"), str(tmp_path / "raw_gone" / "raw" / "k" / "interactions"))


def test_the_command_line_refuses_a_bad_threshold_in_one_line(capsys):
    from pipelines.cli import main

    assert main(["monitor", "--max-new-user-share", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recsys monitor: invalid monitoring parameters: max_new_user_share") and "\n" not in err
    assert main(["monitor", "--path", "/data"]) == 2
    assert "set source too" in capsys.readouterr().err
