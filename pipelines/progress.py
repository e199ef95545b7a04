"""Progress bars for long steps: shown on a terminal, silent when the output is piped.

The CLI turns them on (``RECSYS_PROGRESS=1``) only when stderr is a terminal and ``-v`` is not
given (logs and bars would interleave); Airflow tasks, tests and pipes never see a bar.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

ENV_PROGRESS = "RECSYS_PROGRESS"


def progress_enabled() -> bool:
    """Whether bars are wanted (the CLI on a terminal)."""
    return os.environ.get(ENV_PROGRESS) == "1"


class _Silent:
    def update(self, n: int = 1) -> None:  # noqa: D102 - same calls as tqdm, doing nothing
        pass

    def set_postfix_str(self, text: str) -> None:  # noqa: D102
        pass


@contextmanager
def step_bar(total: int, description: str) -> Iterator[Any]:
    """A bar of ``total`` steps on stderr (tqdm), or an object with the same calls that shows nothing."""
    if not progress_enabled():
        yield _Silent()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit="step", file=sys.stderr, leave=False) as bar:
        yield bar


@contextmanager
def counter_bar(description: str, unit: str, total: int | None = None) -> Iterator[Any]:
    """A bar of epochs, iterations or trials (``total`` unknown: a counter), shown like :func:`step_bar`."""
    if not progress_enabled():
        yield _Silent()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit=unit, file=sys.stderr, leave=False) as bar:
        yield bar
