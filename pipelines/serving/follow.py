"""Follow ``@champion``: poll the registry, load a new version beside the old, swap in one assignment.

Requests read :attr:`ChampionFollower.current` once and keep that object for the whole
answer, so a swap never changes a model under a running request and none is dropped: the
old version answers until the new one is fully loaded, then the reference moves. A
registry or load error keeps the version being served and is retried on the next poll.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from pipelines.serving.scorer import ServingModel

log = logging.getLogger(__name__)


class ChampionFollower:
    """Keeps the version under ``name@alias`` loaded, checking every ``poll_interval`` seconds."""

    def __init__(self, tracking_uri: str, name: str, alias: str, poll_interval: float = 5.0,
                 cache: Path | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.name = name
        self.alias = alias
        self.poll_interval = poll_interval
        self.cache = cache
        self.current: ServingModel | None = None
        self.last_error: str | None = None
        self.last_check: float | None = None
        self.swaps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = None

    def check_once(self) -> bool:
        """Load and swap in the alias's version if it changed; returns True when it swapped."""
        from mlflow import MlflowClient

        from pipelines.serving.registry import alias_version, load_version

        if self._client is None:
            self._client = MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)
        version = alias_version(self._client, self.name, self.alias)
        self.last_check = time.time()
        if version is None:
            self.last_error = f"registered model {self.name!r} has no @{self.alias} version yet"
            return False
        if self.current is not None and self.current.version == version:
            self.last_error = None
            return False
        started = time.perf_counter()
        model = ServingModel(load_version(self.tracking_uri, self.name, version, self.cache), self.name, version)
        previous, self.current = self.current, model  # the swap: one reference assignment
        self.swaps += 1
        self.last_error = None
        log.info("serving %s v%s (%s) after %.2f s load%s", self.name, version, model.family,
                 time.perf_counter() - started, f", replacing v{previous.version}" if previous else "")
        return True

    def start(self) -> None:
        """Poll in a background thread (the first check runs at once)."""
        self._thread = threading.Thread(target=self._loop, name="recsys-champion-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception as exc:  # keep serving the loaded version; say why on /ready
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("could not refresh %s@%s: %s", self.name, self.alias, self.last_error)
            self._stop.wait(self.poll_interval)
