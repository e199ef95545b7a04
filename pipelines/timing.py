"""Seconds and peak memory of each pipeline step, measured one way everywhere.

:func:`timed_step` wraps a step (ingest, clean, features, fit, evaluate, register) and records
``{"seconds": wall time, "peak_rss_mib": the process's peak resident memory during the step}``.
The CLI prints these in its JSON (and a table on a terminal), each DAG task returns its own,
and :func:`log_step_timings` puts them on the MLflow parent run.

Peak memory per step: on Linux the kernel's high-water mark (VmHWM) is reset at the start of a
step (``/proc/self/clear_refs``) and read at its end, so nothing polls; where that is refused,
a sampling thread reads the resident size every few milliseconds. It is the memory of this
process: Dask worker processes (when the cluster uses processes) are not included.
"""

from __future__ import annotations

import logging
import resource
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, MutableMapping

log = logging.getLogger(__name__)

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_SAMPLE_SECONDS = 0.01
# Steps nest (train holds fit and evaluate); resetting the high-water mark inside an outer step
# would lose the outer step's peak, so only the outermost step resets it.
_depth = threading.local()


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_mib() -> float:
    """Resident memory of this process now, in MiB (0.0 where /proc is absent)."""
    kib = _status_kib("VmRSS")
    return round((kib or 0) / 1024, 1)


def _reset_high_water_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")  # "5": reset the peak RSS (Linux >= 4.0)
    except OSError:
        return False
    return True


class _Sampler(threading.Thread):
    """Fallback where VmHWM cannot be reset: the largest VmRSS seen while the step runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="peak-rss-sampler")
        self.peak_kib = _status_kib("VmRSS") or 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(_SAMPLE_SECONDS):
            self.peak_kib = max(self.peak_kib, _status_kib("VmRSS") or 0)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak_kib, _status_kib("VmRSS") or 0)


@contextmanager
def timed_step(name: str, into: MutableMapping[str, Any] | None = None) -> Iterator[dict[str, float]]:
    """Time the ``with`` body; the yielded dict (also stored as ``into[name]``) gets
    ``seconds`` and ``peak_rss_mib`` when the body ends, even when it raises."""
    record: dict[str, float] = {}
    if into is not None:
        into[name] = record
    depth = getattr(_depth, "value", 0)
    _depth.value = depth + 1
    sampler = None
    high_water = depth == 0 and _reset_high_water_mark()
    if not high_water:
        sampler = _Sampler()
        sampler.start()
    started = time.perf_counter()
    try:
        yield record
    finally:
        record["seconds"] = round(time.perf_counter() - started, 3)
        peak_kib = (_status_kib("VmHWM") or 0) if high_water else sampler.stop()
        if not peak_kib:  # no /proc: the lifetime peak is the best there is
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        record["peak_rss_mib"] = round(peak_kib / 1024, 1)
        _depth.value = depth
        log.info("step %s: %.2f s, peak RSS %.0f MiB", name, record["seconds"], record["peak_rss_mib"])


def timings_table(timings: Mapping[str, Mapping[str, float]]) -> str:
    """A short fixed-width table of step, seconds, peak RSS, and the sum of the steps' seconds."""
    width = max([len("step"), *(len(name) for name in timings)])
    lines = [f"{'step':<{width}}  {'seconds':>8}  {'peak RSS MiB':>12}"]
    for name, record in timings.items():
        lines.append(f"{name:<{width}}  {record.get('seconds', 0.0):>8.2f}  {record.get('peak_rss_mib', 0.0):>12.0f}")
    total = sum(record.get("seconds", 0.0) for record in timings.values())
    lines.append(f"{'total':<{width}}  {total:>8.2f}")
    return "\n".join(lines)


def print_timings_table(timings: Mapping[str, Mapping[str, float]], stream: Any = None) -> None:
    """Print :func:`timings_table` to ``stream`` (stderr) when it is a terminal."""
    stream = stream or sys.stderr
    if timings and getattr(stream, "isatty", lambda: False)():
        print(timings_table(timings), file=stream)


def log_step_timings(tracking: Mapping[str, str] | None, timings: Mapping[str, Mapping[str, float]]) -> None:
    """Log each step's seconds and peak RSS as metrics of the MLflow parent run in ``tracking``."""
    if not tracking or not timings:
        return
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=tracking.get("tracking_uri"))
    metrics = {}
    for name, record in timings.items():
        key = name.replace(":", "_")
        metrics[f"step_seconds_{key}"] = record.get("seconds", 0.0)
        metrics[f"step_peak_rss_mib_{key}"] = record.get("peak_rss_mib", 0.0)
    now = int(time.time() * 1000)
    client.log_batch(tracking["parent_run_id"], metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
