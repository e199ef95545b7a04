"""Rollback: move the serving alias back to the previous champion, and say who did it and why.

The registered model's ``champion.history`` tag (kept by promotion) lists the versions that
held the alias, oldest first. A rollback moves the alias to the entry before the current
champion and drops the current one from the history, so repeated rollbacks walk further
back. Versions deleted from the registry since are passed over. The move is a
compare-and-set like promotion's: it is refused when the alias moved while the rollback was
deciding. Both versions get ``rollback.*`` tags (who, when, why) and a line on their card.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from pipelines.constants import DEFAULT_REGISTERED_MODEL, SERVING_ALIAS
from pipelines.errors import PromotionError
from pipelines.tracking.promotion import (
    alias_version,
    champion_history,
    is_not_found,
    registry_client,
    set_champion_history,
)

log = logging.getLogger(__name__)


class Rollback(BaseModel):
    """What a rollback did."""

    registered_model: str
    alias: str
    from_version: str
    to_version: str
    by: str
    at: str
    reason: str
    history: list[str]


def rollback_champion(
    registered_model: str = DEFAULT_REGISTERED_MODEL,
    by: str = "unknown",
    reason: str = "",
    alias: str = SERVING_ALIAS,
    tracking_uri: str | None = None,
    client: Any = None,
) -> Rollback:
    """Move ``alias`` back to the champion before the current one.

    Raises PromotionError when there is no champion, no earlier champion recorded, or the
    alias moved while the rollback was deciding; registry errors propagate unchanged.
    """
    client = client or registry_client(tracking_uri)
    current = alias_version(client, registered_model, alias)
    if current is None:
        raise PromotionError(f"{registered_model} has no @{alias} to roll back")
    history = champion_history(client, registered_model)
    earlier = history[: len(history) - 1 - history[::-1].index(current)] if current in history else history
    target, kept = _previous_existing(client, registered_model, earlier, current)
    if target is None:
        raise PromotionError(
            f"no earlier champion of {registered_model} to roll back to from v{current} "
            f"(champion history: {','.join(history) or 'empty'})"
        )
    if alias_version(client, registered_model, alias) != current:  # compare-and-set, as promotion does
        raise PromotionError(f"@{alias} of {registered_model} moved while rolling back from v{current}; nothing changed")
    client.set_registered_model_alias(registered_model, alias, target)

    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    done = Rollback(registered_model=registered_model, alias=alias, from_version=current, to_version=target,
                    by=by, at=at, reason=reason, history=kept)
    set_champion_history(client, registered_model, kept)
    why = f": {reason}" if reason else ""
    _record(client, registered_model, current, {
        "rollback.status": "rolled_back", "rollback.replaced_by": target,
        "rollback.by": by, "rollback.at": at, "rollback.reason": reason, "promotion.status": "rolled_back",
    }, f"**Rolled back** from @{alias} to v{target} by {by} at {at}{why}.")
    _record(client, registered_model, target, {
        "rollback.status": "restored", "rollback.restored_from": current,
        "rollback.by": by, "rollback.at": at, "rollback.reason": reason, "promotion.status": "restored",
    }, f"**Restored to @{alias}** (rollback from v{current}) by {by} at {at}{why}.")
    log.info("rolled back %s @%s from v%s to v%s (%s)", registered_model, alias, current, target, reason)
    return done


def _previous_existing(client: Any, name: str, earlier: list[str], current: str) -> tuple[str | None, list[str]]:
    """The last version of ``earlier`` that still exists (and is not ``current``), and the history up to it."""
    import mlflow

    for index in range(len(earlier) - 1, -1, -1):
        version = earlier[index]
        if version == current:
            continue
        try:
            client.get_model_version(name, version)
        except mlflow.exceptions.MlflowException as exc:
            if is_not_found(exc):
                log.warning("champion history of %s names v%s, which was deleted; passing over it", name, version)
                continue
            raise
        return version, earlier[: index + 1]
    return None, []


def _record(client: Any, name: str, version: str, tags: dict[str, str], line: str) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value[:4900])
    description = client.get_model_version(name, version).description or ""
    client.update_model_version(name, version, description=f"{line}\n\n{description}".strip())
