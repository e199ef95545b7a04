"""Health and served-recommendation measures from rows in a real SQLite serving database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from pipelines.monitoring.health import health_measures, latencies, read_request_log
from pipelines.monitoring.quality import event_measures, read_events
from pipelines.serving.tables import events, make_engine, request_log

END = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
START = END - timedelta(hours=24)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    yield engine
    engine.dispose()


def _request(at, status=200, source="model", latency=5.0, endpoint="get"):
    return {"at": at, "request_id": f"r{at.timestamp()}{latency}", "endpoint": endpoint, "user_id": "u",
            "k": 10, "source": source, "model_name": "recsys", "model_version": "3", "items": 10,
            "latency_ms": latency, "status": status}


def test_latency_errors_and_fallbacks_of_the_window(engine):
    inside = [END - timedelta(hours=h) for h in range(1, 21)]
    rows = [_request(at, latency=float(i + 1)) for i, at in enumerate(inside[:16])]  # 1..16 ms from the model
    rows += [_request(inside[16], source="popularity", latency=17.0), _request(inside[17], source="seed_items", latency=18.0)]
    rows += [_request(inside[18], status=422, source="none", latency=0.5), _request(inside[19], status=503, source="none")]
    rows += [_request(END, latency=999.0), _request(START - timedelta(seconds=1), status=500)]  # outside [START, END)
    with engine.begin() as conn:
        conn.execute(request_log.insert(), rows)
    log = read_request_log(engine, START, END)
    measured = health_measures(log)
    answered = np.arange(1, 19, dtype=float)  # the 18 successful answers' latencies
    assert measured["requests"] == 20 and measured["errors"] == 2 and measured["error_rate"] == pytest.approx(0.1)
    for q in (50, 95, 99):
        assert measured[f"latency_p{q}_ms"] == pytest.approx(np.percentile(answered, q))
    assert measured["fallback_share"] == pytest.approx(2 / 18)
    assert measured["popularity_share"] == pytest.approx(1 / 18) and measured["seed_items_share"] == pytest.approx(1 / 18)
    assert sorted(latencies(log)) == answered.tolist()


def test_an_empty_window_measures_nothing(engine):
    measured = health_measures(read_request_log(engine, START, END))
    assert measured["requests"] == 0 and measured["error_rate"] is None and measured["latency_p99_ms"] is None


def test_click_through_and_conversion_of_served_items(engine):
    t0 = END - timedelta(hours=10)

    def event(kind, user, item, at, version="3"):
        return {"received_at": at, "event_time": at, "event_type": kind, "user_id": user, "item_id": item,
                "request_id": "r", "position": 1, "model_version": version}

    rows = [event("impression", "u1", "a", t0), event("impression", "u1", "b", t0), event("impression", "u2", "a", t0),
            event("impression", "u2", "c", t0), event("impression", "u1", "a", t0 + timedelta(hours=1)),
            event("click", "u1", "a", t0 + timedelta(minutes=1)),
            event("impression", "u3", "a", t0, version="2"),  # another version's list: not the champion's
            event("click", "u9", "z", START - timedelta(hours=1))]  # before the window
    with engine.begin() as conn:
        conn.execute(events.insert(), rows)
    stamp = int(t0.timestamp())
    fresh = pd.DataFrame({"user_id": ["u1", "u2", "u2", "u3"], "item_id": ["a", "c", "a", "a"],
                          "timestamp": [stamp + 600, stamp - 600, stamp + 5, stamp + 5]})
    measured = event_measures(read_events(engine, START, END), fresh, version="3")
    assert measured["impressions"] == 5 and measured["clicks"] == 1 and measured["ctr"] == pytest.approx(1 / 5)
    # Impressed pairs: u1/a, u1/b, u2/a, u2/c. Interacted after the first impression: u1/a and u2/a
    # (u2/c came before it was shown; u3/a was shown by another version).
    assert measured["impression_conversion"] == pytest.approx(2 / 4)
    everything = event_measures(read_events(engine, START, END), fresh)
    assert everything["impressions"] == 6 and everything["impression_conversion"] == pytest.approx(3 / 5)

