"""The drift statistics on small frames with known answers, the judge, and the config's refusals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import ConfigError
from pipelines.monitoring import drift
from pipelines.monitoring.config import RULES, SUPPORT_FIELDS, MonitoringConfig, Thresholds, from_params, param_specs
from pipelines.monitoring.decision import judge

DAY = 86_400


def frame(users, items, ratings=None, timestamps=None) -> pd.DataFrame:
    n = len(users)
    return pd.DataFrame({
        "user_id": [str(u) for u in users], "item_id": [str(i) for i in items],
        "rating": np.asarray(ratings if ratings is not None else [4.0] * n, dtype=float),
        "timestamp": np.asarray(timestamps if timestamps is not None else np.arange(n) * 3600, dtype=np.int64),
    })


# -- distances ------------------------------------------------------------------------------


def test_js_distance_is_zero_for_equal_and_one_for_disjoint_distributions():
    assert drift.js_distance([3, 1, 0], [30, 10, 0]) == pytest.approx(0.0, abs=1e-12)
    assert drift.js_distance([5, 5, 0, 0], [0, 0, 2, 8]) == pytest.approx(1.0)
    # p = (1, 0), q = (1/2, 1/2), mixture m = (3/4, 1/4): the distance from its definition.
    expected = math.sqrt(0.5 * (1 * math.log2(1 / 0.75)) + 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)))
    assert drift.js_distance([1, 0], [1, 1]) == pytest.approx(expected)


def test_js_excess_removes_the_sampling_noise_of_a_long_tail():
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, 2001)  # Zipf-like catalogue: most items seen once or never per sample
    weights /= weights.sum()
    a, b = rng.multinomial(5000, weights), rng.multinomial(1000, weights)
    distance, noise, excess = drift.js_excess(a, b, np.random.default_rng(1))
    assert distance > 0.3  # raw JS alone would call this drift
    assert noise == pytest.approx(distance, abs=0.03) and excess < 0.03
    shifted = rng.multinomial(1000, np.roll(weights, 1000))  # the popular half becomes the tail
    _, _, moved = drift.js_excess(a, shifted, np.random.default_rng(1))
    assert moved > 0.3
    assert drift.js_excess(np.array([4, 0]), np.array([0, 4]), np.random.default_rng(0))[0] == pytest.approx(1.0)


def test_psi_is_zero_for_equal_bins_and_matches_its_formula():
    assert drift.psi([50, 50], [5, 5]) == pytest.approx(0.0)
    expected = (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5)
    assert drift.psi([50, 50], [90, 10]) == pytest.approx(expected)
    assert math.isfinite(drift.psi([10, 0], [0, 10]))  # empty bins are floored, not infinite


def test_ks_and_wasserstein_on_identical_and_shifted_samples():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert drift.ks_statistic(values, values) == 0.0
    assert drift.ks_statistic(values, values + 10) == 1.0
    assert drift.normalised_wasserstein(values, values) == 0.0
    assert drift.normalised_wasserstein(values, values + np.std(values)) == pytest.approx(1.0)  # one std apart
    assert drift.normalised_wasserstein(np.ones(4), np.ones(4) * 3) == pytest.approx(2.0)  # constant: raw distance


def test_value_bins_by_value_keep_unseen_values_apart():
    labels, ref, cur = drift.value_bins(np.array([1.0, 1.0, 2.0]), np.array([2.0, 3.0, 3.0, 1.0]))
    assert labels[:2].tolist() == [1.0, 2.0] and math.isnan(labels[2])
    assert ref.tolist() == [2, 1, 0] and cur.tolist() == [1, 1, 2]
    many = np.arange(1000, dtype=float)
    labels, ref, cur = drift.value_bins(many, many)
    assert len(ref) == 10 and ref.tolist() == cur.tolist() and ref.sum() == 1000


# -- new rows and the measures over them ---------------------------------------------------


def test_new_rows_are_keys_absent_from_the_snapshot():
    snapshot = frame(["u1", "u1", "u2"], ["a", "b", "a"], timestamps=[10, 20, 30])
    current = frame(["u1", "u1", "u2", "u3"], ["a", "b", "a", "a"], timestamps=[10, 25, 30, 5])
    # u1/b re-rated later, u3/a arrived late with an older timestamp: both new; the others are the snapshot's.
    assert drift.new_rows_mask(snapshot, current).tolist() == [False, True, False, True]
    assert drift.new_rows_mask(snapshot.iloc[:0], current).all()


def test_drift_measures_count_new_users_items_and_volume():
    snapshot = frame(["u1", "u2", "u3", "u4"] * 5, ["a", "b", "c", "d", "e"] * 4,
                     timestamps=np.arange(20) * DAY)
    new = frame(["u1", "u9", "u9", "u2", "u8"], ["a", "a", "z", "b", "y"], timestamps=20 * DAY + np.arange(5) * DAY)
    result = drift.drift_measures(snapshot, pd.concat([snapshot, new], ignore_index=True), seed=0)
    m = result.measures
    assert m["new_interactions"] == 5 and m["new_interactions_ratio"] == pytest.approx(5 / 20)
    assert m["new_user_share"] == pytest.approx(3 / 5)  # u9, u9, u8
    assert m["new_item_share"] == pytest.approx(2 / 5)  # z, y
    assert m["new_user_share_distinct"] == pytest.approx(2 / 4) and m["new_item_share_distinct"] == pytest.approx(2 / 4)
    assert (m["new_users"], m["new_items"]) == (2, 2)
    # New rows span 4 days; the snapshot had 4 rows in its last 4 days.
    assert m["volume_ratio"] == pytest.approx(5 / 4)
    assert m["days_since_snapshot"] == pytest.approx(5)
    assert m["rating_ks"] == 0.0 and m["rating_wasserstein"] == 0.0 and m["rating_psi"] == pytest.approx(0.0)
    assert 0 < m["popularity_js"] <= 1 and m["popularity_js_excess"] >= 0
    assert result.popularity["snapshot"].sum() == 20 and result.popularity["new"].sum() == 5
    assert result.hours.shape == (2, 24) and result.hours.sum(axis=1) == pytest.approx([1, 1])


def test_identical_data_has_no_new_rows_and_nothing_to_judge():
    snapshot = frame(["u1", "u2"], ["a", "b"])
    result = drift.drift_measures(snapshot, snapshot.copy())
    assert result.measures["new_interactions"] == 0 and result.measures["new_user_share"] is None
    assert result.measures["popularity_js"] is None
    assert judge(drift.clean_measures(result.measures), Thresholds())["breaches"] == []


def test_same_distribution_gives_no_drift_and_a_disjoint_one_gives_maximal_drift():
    rng = np.random.default_rng(3)
    weights = 1.0 / np.arange(1, 301) ** 0.8
    weights /= weights.sum()

    def sample(n, start, items):
        return frame(rng.integers(0, 200, n), rng.choice(items, n, p=weights), rng.choice([3.0, 4.0, 5.0], n),
                     start + rng.integers(0, 30 * DAY, n))

    items = np.array([f"i{i}" for i in range(300)])
    snapshot = sample(20_000, 0, items)
    same = drift.drift_measures(snapshot, pd.concat([snapshot, sample(5000, 30 * DAY, items)]), seed=0).measures
    other = drift.drift_measures(snapshot, pd.concat([snapshot, sample(5000, 30 * DAY, np.char.add(items, "x"))]),
                                 seed=0).measures
    assert same["popularity_js_excess"] < 0.02 and same["rating_ks"] < 0.03 and same["hour_of_day_js_excess"] < 0.02
    assert same["new_item_share"] == 0 and same["new_user_share"] == 0
    assert judge(drift.clean_measures(same), Thresholds())["breaches"] == []
    assert other["popularity_js"] == pytest.approx(1.0) and other["new_item_share"] == 1.0
    verdict = judge(drift.clean_measures(other), Thresholds())
    assert verdict["retrain"] and {b["measure"] for b in verdict["breaches"]} >= {"new_item_share", "popularity_js_excess"}


# -- the judge --------------------------------------------------------------------------------


def test_judge_names_breaches_and_leaves_thin_evidence_unjudged():
    measures = {"new_interactions": 5000.0, "new_user_share": 0.5, "new_item_share": 0.01, "error_rate": 0.2,
                "requests": 10.0, "latency_p99_ms": 900.0, "live_quality_ratio": 0.1, "live_users": 3.0,
                "champion_age_days": 40.0}
    verdict = judge(measures, Thresholds())
    assert [(b["measure"], b["action"]) for b in verdict["breaches"]] == [
        ("new_user_share", "retrain"), ("champion_age_days", "retrain")]
    assert verdict["retrain"] and not verdict["alert"]
    assert verdict["reason"] == "retrain: new_user_share 0.5 > 0.2; champion_age_days 40 > 30"
    thin = {u["measure"]: u["why"] for u in verdict["unjudged"]}
    assert thin["error_rate"] == "requests 10 < min_requests 100" and "live_quality_ratio" in thin
    alerting = judge({**measures, "requests": 1000.0}, Thresholds(max_champion_age_days=None, max_new_user_share=None))
    assert not alerting["retrain"] and alerting["alert"]
    assert alerting["reason"] == "alert: error_rate 0.2 > 0.01; latency_p99_ms 900 > 250"
    assert judge({"new_interactions": 10.0}, Thresholds())["reason"] == ""


# -- the config and its form ------------------------------------------------------------------


def test_every_threshold_has_a_rule_and_a_nullable_form_field():
    fields = set(Thresholds.model_fields) - set(SUPPORT_FIELDS)
    assert fields == set(RULES)
    specs = param_specs()
    for name, spec in specs.items():
        assert spec["title"] and spec.get("description"), name
        if name not in ("registered_model", "alias"):
            assert "null" in spec["type"], f"{name} would be required in the form"
    for name, field in Thresholds.model_fields.items():
        assert specs[name]["default"] == field.default and specs[name]["section"] == "Thresholds"
    assert from_params({}) == MonitoringConfig()


def test_from_params_builds_the_data_source_and_thresholds():
    config = from_params({"source": "csv", "path": "/data/slices", "max_new_user_share": 0.3, "k": 5,
                          "tracking_uri": "sqlite:///x.db", "min_ctr": None})
    assert config.data.source == "csv" and config.data.path == "/data/slices"
    assert config.thresholds.max_new_user_share == 0.3 and config.thresholds.min_ctr is None and config.k == 5
    assert config.tracking_uri == "sqlite:///x.db"
    sql = from_params({"source": "sql", "sql_conn_id": "events_db", "sql_table": "ratings"})
    assert (sql.data.conn_id, sql.data.table) == ("events_db", "ratings")


@pytest.mark.parametrize("params, named", [
    ({"max_new_user_share": 2}, "max_new_user_share"),
    ({"k": 0}, "k"),
    ({"lookback_hours": -1}, "lookback_hours"),
    ({"source": "ftp"}, "source"),
    ({"nonsense": 1}, "nonsense"),
    ({"path": "/data"}, "source"),
    ({"source": "csv"}, "path is required"),
    ({"source": "sql", "sql_table": "t"}, "conn_id"),
    ({"window_end": "yesterday"}, "window_end"),
])
def test_from_params_refuses_bad_values_naming_the_field(params, named):
    with pytest.raises(ConfigError, match=named):
        from_params(params)


def test_request_log_gains_its_status_column_on_an_old_database(tmp_path):
    import sqlalchemy as sa

    from pipelines.serving.tables import make_engine, request_log

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sa.create_engine(url)
    with old.begin() as conn:  # the table as it was before the status column
        conn.execute(sa.text("CREATE TABLE recsys_request_log (id INTEGER PRIMARY KEY, at DATETIME NOT NULL, "
                             "request_id VARCHAR(64) NOT NULL, endpoint VARCHAR(32) NOT NULL, user_id VARCHAR(256) "
                             "NOT NULL, k INTEGER NOT NULL, source VARCHAR(16) NOT NULL, model_name VARCHAR(256) "
                             "NOT NULL, model_version VARCHAR(32) NOT NULL, items INTEGER NOT NULL, latency_ms FLOAT NOT NULL)"))
        conn.execute(sa.text("INSERT INTO recsys_request_log VALUES (1, '2026-01-01 00:00:00', 'r', 'get', 'u', 10, "
                             "'model', 'm', '1', 10, 3.5)"))
    engine = make_engine(url)
    make_engine(url)  # idempotent
    with engine.connect() as conn:
        assert conn.execute(sa.select(request_log.c.status)).scalar_one() == 200
