"""Mapping source columns onto the canonical names (pure functions, no IO)."""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.constants import GENRES, INTERACTION_COLUMNS, ITEM, RATING, TAGS, TIMESTAMP, TITLE, USER
from pipelines.errors import ConfigError, DataError

# Usual spellings of each canonical column, compared case-insensitively.
ALIASES: dict[str, tuple[str, ...]] = {
    USER: ("user_id", "userid", "user", "customer_id", "customerid", "visitor_id"),
    ITEM: ("item_id", "itemid", "item", "movieid", "movie_id", "product_id", "productid"),
    RATING: ("rating", "score", "stars", "value"),
    TIMESTAMP: ("timestamp", "ts", "time", "event_time", "datetime", "date"),
    TITLE: ("title", "name"),
    GENRES: ("genres", "genre", "categories", "category"),
    TAGS: ("tags", "tag", "keywords"),
}


def _check_targets(column_map: dict[str, str], allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    bad = {src: dst for src, dst in column_map.items() if dst not in allowed}
    if bad:
        raise ConfigError(f"column_map for {where} maps to unknown names {bad}; targets must be among {list(allowed)}")
    targets = list(column_map.values())
    doubled = sorted({t for t in targets if targets.count(t) > 1})
    if doubled:
        raise ConfigError(f"column_map for {where} maps several columns onto {doubled}: {column_map}")


def _detect(available: list[str], canonical: str) -> str | None:
    lowered = {col.lower(): col for col in reversed(available)}  # first spelling wins on clashes
    for alias in ALIASES[canonical]:
        if alias in lowered:
            return lowered[alias]
    return None


def resolve_column_map(
    available: Iterable[str],
    column_map: dict[str, str] | None,
    where: str,
    required: tuple[str, ...] = INTERACTION_COLUMNS,
    optional: tuple[str, ...] = (),
) -> dict[str, str]:
    """Return ``{source column: canonical name}`` covering every ``required`` column.

    With ``column_map`` None the canonical columns are found by their usual aliases
    (``userId``, ``movieId``, ...). With an explicit map every key must exist in the source;
    canonical columns it does not mention are taken under their canonical name.

    Raises:
        ConfigError: the map targets unknown or duplicate canonical names.
        DataError: a mapped column or a required canonical column is missing; the message
            names ``where`` (file or table), the missing and the available columns.
    """
    available = [str(col) for col in available]
    wanted = tuple(required) + tuple(optional)
    resolved: dict[str, str] = {}
    if column_map is None:
        for canonical in wanted:
            found = _detect(available, canonical)
            if found is not None:
                resolved[found] = canonical
    else:
        _check_targets(column_map, wanted, where)
        absent = [src for src in column_map if src not in available]
        if absent:
            raise DataError(
                f"{where}: column(s) {absent} named in column_map are missing; available columns: {available}"
            )
        resolved = dict(column_map)
        for canonical in wanted:
            if canonical not in resolved.values() and canonical in available and canonical not in resolved:
                resolved[canonical] = canonical
    missing = [canonical for canonical in required if canonical not in resolved.values()]
    if missing:
        hint = {c: list(ALIASES[c]) for c in missing} if column_map is None else "set column_map"
        raise DataError(
            f"{where}: no column for {missing} (looked for {hint}); available columns: {available}; "
            "map them with column_map={'source column': 'canonical name'}"
        )
    return resolved
