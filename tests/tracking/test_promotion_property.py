"""Property: whatever the order of runs, registry failures and reviews, the champion never gets worse.

Each generated example is a few training runs against a real MLflow registry (SQLite): every
run registers a version of known quality, compares it with the champion on its own held-out
data (a per-run offset shifts every model's metric on that data alike), may wait for a
reviewer, then applies the proposal. The runs are interleaved step by step in a generated
order, so two promotions race; registry calls fail at generated points (wrapping the real
client, as a locked database or a 503 would), and a failed step is retried like an Airflow
task. Whenever ``champion`` moves, the new holder must be better than the one before it
(its metric on a fixed reference set, which the per-run offsets cancel out of).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import uuid
from pathlib import Path

import mlflow
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException

from pipelines.errors import PromotionError
from pipelines.tracking.promotion import (
    Approval,
    PromotionConfig,
    alias_version,
    apply_proposal,
    champion_history,
    compare,
)
from tests.tracking.registry_faults import RandomFailures

pytestmark = pytest.mark.slow

ATTEMPTS = 3  # the training DAG's retries=2

run_strategy = st.fixed_dictionaries({
    "quality": st.integers(1, 19).map(lambda q: q / 20),  # the model's metric on reference data
    "offset": st.integers(-3, 3).map(lambda o: o / 100),  # how this run's held-out data shifts every metric
    "popularity": st.integers(1, 10).map(lambda p: p / 20),
    "approval": st.sampled_from([None, True, False]),  # None: no approval required
})


@pytest.fixture(scope="module")
def registry_uri(_mlflow_template_db):
    """A real SQLite registry in memory-backed storage when there is some: the property makes
    thousands of commits, and on a disk each one waits for fsync."""
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="recsys-promotion-", dir=shm if shm.is_dir() else None))
    shutil.copy(_mlflow_template_db, folder / "mlflow.db")
    yield f"sqlite:///{folder / 'mlflow.db'}"
    shutil.rmtree(folder, ignore_errors=True)


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    runs=st.lists(run_strategy, min_size=2, max_size=4),
    schedule_seed=st.integers(0, 2**32 - 1),
    failure_seed=st.integers(0, 2**32 - 1),
    failure_rate=st.sampled_from([0.0, 0.1, 0.3]),
    margin=st.sampled_from([0.0, 0.02]),
)
def test_champion_metric_never_goes_down(registry_uri, runs, schedule_seed, failure_seed, failure_rate, margin):
    real = mlflow.MlflowClient(registry_uri)
    rng = random.Random(failure_seed)
    flaky = RandomFailures(real, rng, failure_rate)
    name = f"prop-{uuid.uuid4().hex[:8]}"
    real.create_registered_model(name)
    quality: dict[str, float] = {}
    champions: list[str] = []
    abandoned: list[int] = []

    def check() -> None:
        champion = alias_version(real, name, "champion")
        if champion is not None and (not champions or champions[-1] != champion):
            if champions:
                previous = champions[-1]
                assert quality[champion] > quality[previous], (
                    f"@champion went from v{previous} ({quality[previous]}) to v{champion} ({quality[champion]})"
                )
            champions.append(champion)

    def attempt(step, moves_alias: bool):
        for _ in range(ATTEMPTS):
            try:
                return step()
            except (MlflowException, PromotionError, ConnectionError):
                continue
            finally:
                if moves_alias:  # only applying a proposal moves the alias: check after every attempt
                    check()
        return None

    def training_run(index: int, run: dict):
        version = str(real.create_model_version(name, source=f"file:///models/{index}").version)
        quality[version] = run["quality"]
        config = PromotionConfig(registered_model=name, margin=margin, require_approval=run["approval"] is not None)

        def evaluate_champion(champion: str) -> float:
            if rng.random() < failure_rate:
                raise OSError("artifact store unreachable")
            return quality[champion] + run["offset"]

        yield
        proposal = attempt(lambda: compare(config, version, run["quality"] + run["offset"], run["popularity"] + run["offset"],
                                           evaluate_champion, client=flaky), moves_alias=False)
        if proposal is None:
            abandoned.append(index)
            return
        approval = None
        if proposal.requires_approval:
            yield  # a person reads the card; other runs go on meanwhile
            approval = Approval(approved=run["approval"], by="reviewer", at="2026-12-03T07:00:00+00:00", reason="test")
        yield
        if attempt(lambda: apply_proposal(proposal, approval, client=flaky), moves_alias=True) is None:
            abandoned.append(index)

    active = [training_run(i, run) for i, run in enumerate(runs)]
    schedule = random.Random(schedule_seed)  # which run takes its next step: they all run at once
    while active:
        pick = schedule.randrange(len(active))
        try:
            next(active[pick])
        except StopIteration:
            active.pop(pick)

    if champions and not abandoned:
        # Every completed move was recorded: the history ends at the serving version.
        assert champion_history(real, name)[-1] == champions[-1]
        assert real.get_model_version(name, champions[-1]).tags["promotion.status"] in ("promoted", "already_champion")
