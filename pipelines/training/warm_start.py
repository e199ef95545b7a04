"""The train step's warm start: the current champion's parameters, when the champion can give them.

With ``TrainConfig.warm_start`` the step looks up the registered model's serving alias. When
the champion is of the candidate's family and agrees on its parameter shapes, its bundle
(downloaded once per version, see :mod:`pipelines.serving.registry`) and the id encodings of
both fits make the :class:`~pipelines.models.warm_start.WarmStart`; otherwise the candidate fits
cold. Either way the run's tags say what happened (:func:`champion_warm_start`). A registry
error other than "no such model or alias" propagates, as promotion treats it: a transient
failure must not pass for "no champion".
"""

from __future__ import annotations

import logging
from typing import Any

from pipelines.models.base import Recommender
from pipelines.models.warm_start import WarmStart

log = logging.getLogger(__name__)

TAG = "warm_start"
MODEL_TAG = "recsys.model"  # the version tag naming its family (set at registration)


def champion_warm_start(
    model: Recommender, features: Any, tracking_uri: str | None, registered_model: str, alias: str
) -> tuple[WarmStart | None, dict[str, str]]:
    """(the warm start from ``registered_model@alias``, or None for a cold fit; the run's tags).

    ``model`` is the unfitted candidate, ``features`` the feature set it trains on (its
    ``user_ids``, ``item_ids`` and ``train``). Tags: ``warm_start`` "true" with
    ``warm_start.source`` (name/version) and the shared and new user and item counts, or
    "false" with ``warm_start.reason``.
    """
    from pipelines.serving.registry import alias_version, load_version
    from pipelines.tracking.promotion import registry_client

    def cold(reason: str) -> tuple[None, dict[str, str]]:
        log.info("%s fits cold: %s", model.name, reason)
        return None, {TAG: "false", f"{TAG}.reason": reason}

    if not model.warm_start_fields:
        return cold(f"model {model.name!r} cannot warm start")
    if not tracking_uri:
        return cold("no tracking store to find a champion in")
    client = registry_client(tracking_uri)
    version = alias_version(client, registered_model, alias)
    if version is None:
        return cold(f"no champion yet ({registered_model}@{alias})")
    source = f"{registered_model}/{version}"
    family = client.get_model_version(registered_model, version).tags.get(MODEL_TAG)
    if family is not None and family != model.name:
        return cold(f"champion {source} is a {family} model, not {model.name}")
    bundle = load_version(tracking_uri, registered_model, version)
    warm = WarmStart.from_ids(bundle.model, bundle.user_ids, bundle.item_ids, features.user_ids, features.item_ids,
                              source=source, previous_seen=bundle.seen)
    problem = warm.problem(model, features.train.shape)
    if problem is not None:
        return cold(f"champion {source}: {problem}")
    counts = {f"{TAG}.{key}": str(value) for key, value in warm.summary().items() if key != "source"}
    return warm, {TAG: "true", f"{TAG}.source": source, **counts}
