"""A real MlflowClient with registry failures injected at chosen calls (no mock of the registry)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Callable

from mlflow.exceptions import MlflowException


def database_locked() -> Exception:
    return MlflowException("(sqlite3.OperationalError) database is locked", error_code="INTERNAL_ERROR")


class FailingCalls:
    """Delegates to ``client``; the n-th call of a method named in ``fail_on`` raises instead.

    ``fail_on={"set_model_version_tag": {1}}`` fails the first tag write; counting is per method.
    """

    def __init__(self, client, fail_on: dict[str, set[int]], error: Callable[[], Exception] = database_locked):
        self._client, self._fail_on, self._error = client, fail_on, error
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name):
        target = getattr(self._client, name)
        if not callable(target):
            return target

        def call(*args, **kwargs):
            self.calls[name] += 1
            if self.calls[name] in self._fail_on.get(name, ()):
                raise self._error()
            return target(*args, **kwargs)

        return call


TRANSIENT = (
    database_locked,
    lambda: MlflowException("API request failed with error code 503", error_code="TEMPORARILY_UNAVAILABLE"),
    lambda: ConnectionError("connection reset by peer"),
)


class RandomFailures:
    """Delegates to ``client``; each call fails with probability ``rate`` (a transient error drawn by ``rng``)."""

    def __init__(self, client, rng: random.Random, rate: float):
        self._client, self._rng, self._rate = client, rng, rate

    def __getattr__(self, name):
        target = getattr(self._client, name)
        if not callable(target):
            return target

        def call(*args, **kwargs):
            if self._rng.random() < self._rate:
                raise self._rng.choice(TRANSIENT)()
            return target(*args, **kwargs)

        return call
