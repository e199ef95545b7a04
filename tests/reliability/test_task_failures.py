"""Deterministic errors fail an Airflow task at once; transient ones keep their type (retried)."""

from __future__ import annotations

import pytest

from pipelines.errors import ColdTestRowsError, ConfigError, DataError, PartitionBusyError, RejectedFractionError
from pipelines.task_failures import fail_fast_on_bad_input


def _raising(exc: BaseException):
    @fail_fast_on_bad_input
    def body(plan: dict, *, extra: int = 0) -> dict:
        """A task body."""
        raise exc

    return body


@pytest.mark.parametrize("error", [ConfigError("models: bad"), DataError("no column"),
                                   RejectedFractionError("above the ceiling"), ColdTestRowsError("cold")])
def test_bad_input_fails_without_retry(error):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=f"{type(error).__name__} \\(not retried\\): {error}") as info:
        _raising(error)({})
    assert info.value.__cause__ is error


@pytest.mark.parametrize("error", [RuntimeError("worker lost"), OSError("disk"), PartitionBusyError("busy")])
def test_transient_errors_keep_their_type_for_retries(error):
    with pytest.raises(type(error)):
        _raising(error)({})


def test_wrapper_keeps_the_task_signature_and_result():
    import inspect

    @fail_fast_on_bad_input
    def body(plan: dict, ingested: dict) -> dict:
        return {"n": len(plan) + len(ingested)}

    assert list(inspect.signature(body).parameters) == ["plan", "ingested"]
    assert body({"a": 1}, {}) == {"n": 1}
