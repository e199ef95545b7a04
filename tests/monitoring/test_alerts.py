"""Alerts reach every configured sink; a failing sink is reported, not raised."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from pipelines.errors import ConfigError
from pipelines.monitoring.alerts import (
    Alert,
    alert_sinks,
    alerts_table,
    breach_alerts,
    on_dag_failure,
    send_alerts,
)

RESULT = {"retrain": True, "mlflow_run_id": "abc", "champion": {"version": "3"},
          "breaches": [{"measure": "new_user_share", "value": 0.8, "threshold": 0.2, "action": "retrain",
                        "message": "new_user_share 0.8 > 0.2"},
                       {"measure": "latency_p99_ms", "value": 900.0, "threshold": 250.0, "action": "alert",
                        "message": "latency_p99_ms 900 > 250"}]}


def _rows(url):
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(alerts_table()).order_by("id")).mappings()]
    finally:
        engine.dispose()


def test_sinks_are_chosen_by_argument_or_environment_and_checked(monkeypatch):
    monkeypatch.delenv("RECSYS_ALERT_SINKS", raising=False)
    assert alert_sinks() == ("log", "table")
    monkeypatch.setenv("RECSYS_ALERT_SINKS", "log")
    assert alert_sinks() == ("log",) and alert_sinks("table, log") == ("table", "log")
    with pytest.raises(ConfigError, match=r"\['pager'\] unknown .*RECSYS_ALERT_SINKS"):
        monkeypatch.setenv("RECSYS_ALERT_SINKS", "log,pager")
        alert_sinks()
    monkeypatch.delenv("RECSYS_ALERT_WEBHOOK_URL", raising=False)
    with pytest.raises(ConfigError, match="RECSYS_ALERT_WEBHOOK_URL"):
        alert_sinks("webhook")


def test_breaches_go_to_the_log_and_the_table(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    alerts = breach_alerts(RESULT, "recsys_monitoring", "manual__1")
    with caplog.at_level("WARNING", logger="recsys.alerts"):
        sent = send_alerts(alerts, "log,table", database_url=url)
    assert sent == {"alerts": 2, "sent": ["log", "table"], "failed": {}}
    assert "ALERT threshold_breached recsys_monitoring run=manual__1: new_user_share 0.8 > 0.2" in caplog.text
    rows = _rows(url)
    assert [r["message"] for r in rows] == ["new_user_share 0.8 > 0.2", "latency_p99_ms 900 > 250"]
    assert json.loads(rows[0]["details"]) == {"measure": "new_user_share", "value": 0.8, "threshold": 0.2,
                                              "action": "retrain", "retrain": True, "champion_version": "3",
                                              "mlflow_run_id": "abc"}


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's hook name
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_webhook_receives_json_and_a_dead_one_does_not_stop_the_table(tmp_path, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    alert = Alert(kind="dag_failed", severity="error", source="recsys_training", run_id="r", message="it failed")
    try:
        monkeypatch.setenv("RECSYS_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
        assert send_alerts([alert], ["webhook"])["sent"] == ["webhook"]
        assert _Receiver.received[-1]["text"] == "[error] recsys_training: it failed"
        assert _Receiver.received[-1]["kind"] == "dag_failed"
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("RECSYS_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")  # now closed
    sent = send_alerts([alert], ["webhook", "table"], database_url=url)
    assert sent["sent"] == ["table"] and "webhook" in sent["failed"]
    assert [r["message"] for r in _rows(url)] == ["it failed"]


def test_the_failure_callback_records_the_dag_run_and_task(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    monkeypatch.setenv("RECSYS_SERVING_DB", url)
    monkeypatch.setenv("RECSYS_ALERT_SINKS", "table")
    context = {"dag_run": SimpleNamespace(dag_id="recsys_training", run_id="manual__7", run_type="manual"),
               "ti": SimpleNamespace(task_id="ingest"), "reason": "task_failure"}
    on_dag_failure(context)
    (row,) = _rows(url)
    assert (row["kind"], row["severity"], row["source"], row["run_id"]) == ("dag_failed", "error", "recsys_training",
                                                                           "manual__7")
    assert row["message"] == "recsys_training run manual__7 failed at task ingest: task_failure"
    monkeypatch.setenv("RECSYS_ALERT_SINKS", "nonsense")
    on_dag_failure(context)  # a misconfigured sink is logged; the callback never raises
