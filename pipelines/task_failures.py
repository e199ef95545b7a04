"""Which task failures Airflow should retry: the mapping, kept out of the DAG file.

A bad configuration or bad data fails the same way on every try, so retrying only delays the
message: those errors become ``AirflowFailException`` (the task fails at once, no retry). Any
other error (a killed process, a lost Dask worker, a busy partition, a database hiccup) keeps
its type and gets the task's retries.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from pipelines.errors import ConfigError, DataError

#: Errors that no retry can fix (RejectedFractionError and ColdTestRowsError are DataErrors).
DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DataError)

F = TypeVar("F", bound=Callable[..., Any])


def fail_fast_on_bad_input(func: F) -> F:
    """Wrap a task body so that :data:`DETERMINISTIC_ERRORS` fail the task without retries.

    The message keeps the error's type and text; the original error is chained as the cause.
    Airflow is imported only when such an error happens, so the wrapper costs nothing at parse.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DETERMINISTIC_ERRORS as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{type(exc).__name__} (not retried): {exc}") from exc

    return wrapper  # type: ignore[return-value]
