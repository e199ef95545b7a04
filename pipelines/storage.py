"""Atomic, owned partitions: the one way a step writes its folder of the lake and a reader trusts it.

A step writes everything into a temporary folder beside its target, writes its manifest last,
and only then renames the folder into place (:func:`write_partition`). A reader asks
:func:`require_partition` and gets the partition only when its manifest is there, so a crash,
a kill or a half-finished manual copy can never pass for a complete partition.

While a step writes, ``<target>.lock`` holds its process id: a second live process that
wants the same partition stops with :class:`PartitionBusyError` instead of mixing its rows
in; a lock left by a dead process (a killed task about to be retried) is taken over.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipelines.errors import DataError, PartitionBusyError

MANIFEST = "manifest.json"
_TMP_MARK = ".tmp-"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _lock_path(target: Path) -> Path:
    return target.with_name(target.name + ".lock")


def _holder(lock: Path) -> dict:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}


def _acquire(target: Path) -> Path:
    """Create ``<target>.lock`` holding this process id; take over a lock whose holder is dead.

    Raises:
        PartitionBusyError: another live process on this host holds it.
    """
    lock = _lock_path(target)
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            pid = int(holder.get("pid", 0) or 0)
            # Another host's process cannot be probed: trust its lock rather than mix rows.
            same_host = holder.get("host", me["host"]) == me["host"]
            if pid != me["pid"] and (not same_host or _alive(pid)):
                raise PartitionBusyError(
                    f"partition {target} is being written by process {pid} on {holder.get('host', '?')}; "
                    f"wait for it, or give this run another run key (--run-name); if that process is gone, "
                    f"delete {lock}"
                ) from None
            lock.unlink(missing_ok=True)  # left by a dead (killed) attempt: ours now
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        return lock
    raise PartitionBusyError(f"partition {target}: could not take its lock {lock}; another process races for it")


def _sweep_temporaries(target: Path) -> None:
    """Remove temporary folders of earlier, interrupted attempts at ``target`` (we hold the lock)."""
    if not target.parent.is_dir():
        return
    for stale in target.parent.glob(f".{target.name}{_TMP_MARK}*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def partition_lock(target: str | os.PathLike) -> Iterator[Path]:
    """Hold ``<target>.lock`` for the block (see the module docstring)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = _acquire(target)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


@contextmanager
def write_partition(target: str | os.PathLike, manifest: str = MANIFEST) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success rename it to ``target``.

    The caller writes every file into the yielded folder and ``manifest`` last. On leaving the
    block without an error the folder replaces any earlier ``target`` (a re-run overwrites its
    own partition, never appends); on an error it is removed and ``target`` is left as it was.

    Raises:
        PartitionBusyError: another live process is writing ``target``.
        RuntimeError: the block finished without writing ``manifest`` (a bug in the step).
    """
    target = Path(target)
    with partition_lock(target):
        _sweep_temporaries(target)
        tmp = target.with_name(f".{target.name}{_TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            yield tmp
            if not (tmp / manifest).is_file():
                raise RuntimeError(f"{target}: the step wrote no {manifest}; the partition was not published")
            old = None
            if target.exists():
                old = target.with_name(f".{target.name}{_TMP_MARK}old-{uuid.uuid4().hex[:8]}")
                target.rename(old)
            tmp.rename(target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextmanager
def write_file(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` (a dot-file readers skip); on success rename it to ``target``.

    The rename is atomic on one filesystem: a reader of the folder sees the whole file or none
    of it. On an error the temporary file is removed and ``target`` is left as it was. For single
    files added to a shared folder (landed batches), where :func:`write_partition` owns folders.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}{_TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if not tmp.is_file():
            raise RuntimeError(f"{target}: nothing was written to the temporary file; not published")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sweep_dead_temporaries(folder: str | os.PathLike) -> int:
    """Remove temporary files of :func:`write_file` left in ``folder`` by processes that died; returns how many."""
    removed = 0
    for stale in Path(folder).glob(f".*{_TMP_MARK}*"):
        pid = stale.name.rsplit(_TMP_MARK, 1)[-1].split("-", 1)[0]
        if stale.is_file() and pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)
            removed += 1
    return removed


def require_partition(uri: str | os.PathLike, manifest: str = MANIFEST, what: str = "partition") -> Path:
    """The partition folder holding ``uri`` (the folder itself or its parent) when its manifest exists.

    Steps hand on sub-folders (``raw/<key>/interactions``), so the parent is looked at too.

    Raises:
        DataError: no such folder, or no manifest (interrupted, cleared by hand, or not written by
            a step); the message names the path and how to fix it.
    """
    path = Path(uri)
    if not path.exists():
        raise DataError(f"{what} {str(path)!r} does not exist; run the step that writes it first")
    for folder in (path, path.parent):
        if (folder / manifest).is_file():
            return folder
    raise DataError(
        f"{what} {str(path)!r} has no {manifest}: it is incomplete (interrupted or cleared) or was not "
        "written by a pipeline step; re-run the step that writes it"
    )
