"""The monitoring step's configuration: what to watch, where, and the thresholds that call for action.

:class:`MonitoringConfig` is the one config object of the step; :class:`Thresholds` holds every
limit, each with a data-independent default (``None`` = not checked). :data:`RULES` says which
measure each threshold judges, in which direction, whether a breach asks for retraining or only
for an alert, and which count must be large enough for the measure to be judged at all (a share
over ten rows is noise, not drift).

The monitoring DAG's trigger form is :func:`param_specs` (JSON-schema dicts, as
:func:`pipelines.params.param_specs` for training); :func:`from_params` turns submitted values
into a config and refuses bad ones naming the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Mapping, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.cleaning.config import CleaningConfig
from pipelines.constants import DEFAULT_REGISTERED_MODEL, SERVING_ALIAS
from pipelines.data.config import IngestConfig
from pipelines.errors import ConfigError

MONITORING_EXPERIMENT = "monitoring"


class Thresholds(BaseModel):
    """Limits on the measures; ``None`` leaves a measure reported but unjudged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- the data since the snapshot --------------------------------------------------
    max_new_interactions_ratio: float | None = Field(
        0.5, ge=0, title="Max new interactions (share of the snapshot)",
        description="Retrain once the interactions that arrived since the champion's snapshot reach this share of "
                    "the snapshot's size (0.5: half as much new data as the model learned from).")
    min_volume_ratio: float | None = Field(
        0.1, ge=0, title="Min volume ratio (alert)",
        description="New interactions per day over the snapshot's rate in its last period of the same length; "
                    "below this the feed has likely stalled (an alert, not a retrain).")
    max_volume_ratio: float | None = Field(
        10.0, gt=0, title="Max volume ratio (alert)",
        description="Above this the feed delivers far more than it used to (duplicates, a bot): an alert.")
    max_new_user_share: float | None = Field(
        0.2, ge=0, le=1, title="Max share of new interactions by new users",
        description="New users get fallbacks, not personal recommendations: retrain above this share of the new "
                    "interactions made by users absent from the snapshot.")
    max_new_item_share: float | None = Field(
        0.1, ge=0, le=1, title="Max share of new interactions on new items",
        description="Items absent from the snapshot are never recommended: retrain above this share of the new "
                    "interactions on them.")
    max_new_user_share_distinct: float | None = Field(
        None, ge=0, le=1, title="Max share of new users among distinct users",
        description="The same among distinct users (unset: reported only; it depends on the window's length).")
    max_new_item_share_distinct: float | None = Field(
        None, ge=0, le=1, title="Max share of new items among distinct items",
        description="The same among distinct items (unset: reported only; the catalogue's long tail decides it).")
    max_popularity_js_excess: float | None = Field(
        0.1, ge=0, le=1, title="Max item-popularity shift (Jensen-Shannon, beyond noise)",
        description="Jensen-Shannon distance (base 2, 0 to 1) between the snapshot's and the new interactions' item "
                    "popularity, minus the distance two samples of those sizes from one distribution show.")
    max_popularity_psi: float | None = Field(
        0.25, ge=0, title="Max popularity PSI of the head items",
        description="Population stability index over the most popular items of either side plus 'all others' "
                    "(0.25 is the usual 'significant shift').")
    max_rating_ks: float | None = Field(
        0.1, ge=0, le=1, title="Max rating drift (Kolmogorov-Smirnov)",
        description="Largest gap between the rating CDFs of the snapshot and the new interactions.")
    max_rating_psi: float | None = Field(0.25, ge=0, title="Max rating drift (PSI)",
                                         description="Population stability index of the rating distribution.")
    max_rating_wasserstein: float | None = Field(
        0.1, ge=0, title="Max rating drift (Wasserstein / snapshot std)",
        description="Earth mover's distance between the rating distributions over the snapshot's standard deviation.")
    max_time_pattern_js_excess: float | None = Field(
        0.1, ge=0, le=1, title="Max hour-of-day / day-of-week shift (Jensen-Shannon, beyond noise)",
        description="When in the day and week interactions happen (UTC), snapshot vs new, beyond sampling noise. "
                    "Raw timestamps are not compared: new ones lie after the snapshot by definition.")
    max_champion_age_days: float | None = Field(
        30.0, gt=0, title="Max champion age (days)",
        description="Retrain when the serving version was registered longer ago than this.")
    min_live_quality_ratio: float | None = Field(
        0.5, ge=0, le=100, title="Min live quality (live nDCG@K / recorded test nDCG@K)",
        description="The champion scored on the new interactions of users it knows, over its own test nDCG@K: "
                    "retrain below this ratio.")
    min_ctr: float | None = Field(
        None, ge=0, le=1, title="Min click-through rate",
        description="Clicks over impressions of served recommendations in the window (unset: reported only; "
                    "normal click-through differs by product).")
    min_impression_conversion: float | None = Field(
        None, ge=0, le=1, title="Min share of impressed items interacted with",
        description="Share of impressed (user, item) pairs the user went on to interact with (unset: reported only).")
    max_error_rate: float | None = Field(
        0.01, ge=0, le=1, title="Max error rate (alert)",
        description="Share of recommendation requests answered with a 4xx/5xx in the window: an alert.")
    max_p99_latency_ms: float | None = Field(
        250.0, gt=0, title="Max p99 latency in ms (alert)",
        description="99th percentile of recommendation latency in the window: an alert.")
    max_fallback_share: float | None = Field(
        None, ge=0, le=1, title="Max fallback share",
        description="Share of answers from popularity or seed items instead of the model (unset: reported only; "
                    "sites with many anonymous visitors answer most requests that way).")

    # -- how much evidence a judgement needs --------------------------------------------
    min_new_interactions: int = Field(
        1000, ge=1, le=10**12, title="Min new interactions to judge drift",
        description="Below this many new interactions the drift measures are reported but not judged.")
    min_live_users: int = Field(
        50, ge=1, le=10**9, title="Min users to judge live quality",
        description="Known users with new interactions needed before live quality is judged.")
    min_impressions: int = Field(
        1000, ge=1, le=10**12, title="Min impressions to judge click-through",
        description="Impressions in the window needed before click-through and conversion are judged.")
    min_requests: int = Field(
        100, ge=1, le=10**12, title="Min requests to judge health",
        description="Requests in the window needed before error rate, latency and fallbacks are judged.")


class Rule(NamedTuple):
    """How one threshold judges: ``measures`` compared with the threshold (``max``: breach above,
    ``min``: breach below), ``action`` on a breach, and the count that must reach ``support_field``."""

    measures: tuple[str, ...]
    op: Literal["max", "min"]
    action: Literal["retrain", "alert"]
    support: str | None = None  # measure holding the evidence count
    support_field: str | None = None  # Thresholds field with its minimum


_NEW, _LIVE = ("new_interactions", "min_new_interactions"), ("live_users", "min_live_users")
_SEEN, _ASKED = ("impressions", "min_impressions"), ("requests", "min_requests")

#: Threshold field -> how it judges. Every threshold field of :class:`Thresholds` is here.
RULES: dict[str, Rule] = {
    "max_new_interactions_ratio": Rule(("new_interactions_ratio",), "max", "retrain"),
    "min_volume_ratio": Rule(("volume_ratio",), "min", "alert", *_NEW),
    "max_volume_ratio": Rule(("volume_ratio",), "max", "alert", *_NEW),
    "max_new_user_share": Rule(("new_user_share",), "max", "retrain", *_NEW),
    "max_new_item_share": Rule(("new_item_share",), "max", "retrain", *_NEW),
    "max_new_user_share_distinct": Rule(("new_user_share_distinct",), "max", "retrain", *_NEW),
    "max_new_item_share_distinct": Rule(("new_item_share_distinct",), "max", "retrain", *_NEW),
    "max_popularity_js_excess": Rule(("popularity_js_excess",), "max", "retrain", *_NEW),
    "max_popularity_psi": Rule(("popularity_psi",), "max", "retrain", *_NEW),
    "max_rating_ks": Rule(("rating_ks",), "max", "retrain", *_NEW),
    "max_rating_psi": Rule(("rating_psi",), "max", "retrain", *_NEW),
    "max_rating_wasserstein": Rule(("rating_wasserstein",), "max", "retrain", *_NEW),
    "max_time_pattern_js_excess": Rule(("hour_of_day_js_excess", "day_of_week_js_excess"), "max", "retrain", *_NEW),
    "max_champion_age_days": Rule(("champion_age_days",), "max", "retrain"),
    "min_live_quality_ratio": Rule(("live_quality_ratio",), "min", "retrain", *_LIVE),
    "min_ctr": Rule(("ctr",), "min", "retrain", *_SEEN),
    "min_impression_conversion": Rule(("impression_conversion",), "min", "retrain", *_SEEN),
    "max_error_rate": Rule(("error_rate",), "max", "alert", *_ASKED),
    "max_p99_latency_ms": Rule(("latency_p99_ms",), "max", "alert", *_ASKED),
    "max_fallback_share": Rule(("fallback_share",), "max", "retrain", *_ASKED),
}
SUPPORT_FIELDS = ("min_new_interactions", "min_live_users", "min_impressions", "min_requests")


class MonitoringConfig(BaseModel):
    """Everything one monitoring check needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registered_model: str = Field(DEFAULT_REGISTERED_MODEL, min_length=1, description="MLflow registered model")
    alias: str = Field(SERVING_ALIAS, min_length=1, description="the alias whose version is monitored")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; None: the platform default")
    experiment: str = Field(MONITORING_EXPERIMENT, min_length=1, description="MLflow experiment of the checks")
    data: IngestConfig | None = Field(
        None, description="where the current interactions are read (e.g. a folder where new slices land); "
                          "None: the champion's own training source, read again")
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig,
                                     description="rules for the current interactions (bad rows are not drift)")
    k: int = Field(10, ge=1, le=1000, description="cut-off of the live ranking metrics")
    lake: str | None = Field(None, description="lake root for the check's ingest and clean partitions; None: the platform's")
    database_url: str | None = Field(None, description="serving database (events, request log); None: its default")
    lookback_hours: float = Field(24.0, gt=0, le=24 * 366, description="window of events and request log read")
    window_end: datetime | None = Field(None, description="end of that window (UTC when naive); None: now")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seeds the sampling-noise estimates")
    thresholds: Thresholds = Field(default_factory=Thresholds)

    @model_validator(mode="after")
    def _window_end_aware(self) -> "MonitoringConfig":
        if self.window_end is not None and self.window_end.tzinfo is None:
            from datetime import timezone

            object.__setattr__(self, "window_end", self.window_end.replace(tzinfo=timezone.utc))
        return self


# -- the trigger form ----------------------------------------------------------------------

_SOURCES = ["csv", "parquet", "movielens", "movielens100k", "sql", "synthetic"]
#: Keys from_params takes besides the form's: set by the DAG or the CLI, never shown in the form.
RUNTIME_KEYS = ("tracking_uri", "database_url", "lake", "window_end", "experiment", "seed")


def param_specs() -> dict[str, dict[str, Any]]:
    """name -> {"default": value, **JSON-schema keywords for airflow.sdk.Param}: the monitoring form.

    Optional fields are nullable with default None ("the config's default", or "the champion's
    training source" for the data fields): a non-null type would make the form mark them required
    and disable Trigger. Thresholds show their default value; clearing one restores the default.
    """
    specs: dict[str, dict[str, Any]] = {
        "registered_model": {
            "default": DEFAULT_REGISTERED_MODEL, "type": "string", "minLength": 1, "title": "Registered model",
            "description": "The MLflow registered model whose serving version is monitored.",
        },
        "alias": {
            "default": SERVING_ALIAS, "type": "string", "minLength": 1, "title": "Alias",
            "description": "The alias followed by serving; the version under it is the one checked.",
        },
        "source": {
            "default": None, "type": ["null", "string"], "enum": [None, *_SOURCES], "title": "Current data source",
            "description": "Where the current interactions are read. Unset: the champion's own training source, "
                           "read again (a folder where new slices land is picked up as it grows).",
        },
        "path": {
            "default": None, "type": ["null", "string"], "title": "Source path",
            "description": "csv, parquet, movielens, movielens100k: an absolute file or folder path on the workers.",
        },
        "k": {"default": 10, "type": ["null", "integer"], "minimum": 1, "maximum": 1000,
              "title": "K (cut-off of the live metrics)",
              "description": "Live nDCG@K and recall@K; compared with the champion's recorded test metric at the same K."},
        "lookback_hours": {
            "default": 24.0, "type": ["null", "number"], "exclusiveMinimum": 0, "maximum": 24 * 366,
            "title": "Window of events and request log (hours)",
            "description": "Impressions, clicks and requests of this many hours before the run are read.",
        },
        "sql_conn_id": {
            "default": None, "type": ["null", "string"], "title": "SQL connection id (sql source)", "section": "Data",
            "description": "sql only: an Airflow connection holding the database URL (never the URL itself).",
        },
        "sql_table": {"default": None, "type": ["null", "string"], "title": "SQL table", "section": "Data",
                      "description": "sql only: the table to read; give this or a query."},
        "sql_query": {"default": None, "type": ["null", "string"], "title": "SQL query", "section": "Data",
                      "description": "sql only: a SELECT to read instead of a table."},
    }
    specs.update(threshold_specs())
    return specs


def threshold_specs() -> dict[str, dict[str, Any]]:
    """One nullable Param per :class:`Thresholds` field (section "Thresholds"), from the field itself."""
    out: dict[str, dict[str, Any]] = {}
    properties = Thresholds.model_json_schema()["properties"]
    for name, field in Thresholds.model_fields.items():
        schema = properties[name]
        branch = next((s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"), schema)
        spec: dict[str, Any] = {"default": field.default, "type": ["null", branch["type"]],
                                "title": field.title, "description": field.description, "section": "Thresholds"}
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if key in branch:
                spec[key] = branch[key]
        out[name] = spec
    return out


def defaults() -> dict[str, Any]:
    """The default value of every form parameter."""
    return {name: spec["default"] for name, spec in param_specs().items()}


def from_params(params: Mapping[str, Any]) -> MonitoringConfig:
    """Build the config from the form's values (the DAG's Params, the CLI's options, a test).

    Keys missing or None take their default; ``source`` unset means the champion's own training
    source. The keys of :data:`RUNTIME_KEYS` may be given too (set by the DAG or the CLI).

    Raises:
        ConfigError: naming each unknown key and each refused value (its field and why).
    """
    from pipelines.params import schema_problems

    specs = param_specs()
    unknown = sorted(set(params) - set(specs) - set(RUNTIME_KEYS))
    if unknown:
        raise ConfigError(f"unknown monitoring parameter(s) {', '.join(unknown)}; known: "
                          f"{', '.join([*specs, *RUNTIME_KEYS])}")
    problems = [problem for name, value in params.items() if value is not None and name in specs
                for problem in schema_problems(name, value, specs[name])]
    if problems:
        raise ConfigError("invalid monitoring parameters: " + "; ".join(problems))
    given = {key: value for key, value in params.items() if value is not None}
    data_keys = ("path", "sql_conn_id", "sql_table", "sql_query")
    if "source" not in given and any(key in given for key in data_keys):
        stray = ", ".join(key for key in data_keys if key in given)
        raise ConfigError(f"source: unset (the champion's training source) but {stray} given; set source too")
    data = None
    if "source" in given:
        source = given["source"]
        data = {"source": source}
        if source == "sql":
            data.update(conn_id=given.get("sql_conn_id"), table=given.get("sql_table"), query=given.get("sql_query"))
        elif source != "synthetic":
            data["path"] = given.get("path")
    fields = {key: given[key] for key in ("registered_model", "alias", "k", "lookback_hours", *RUNTIME_KEYS)
              if key in given}
    thresholds = {name: given[name] for name in Thresholds.model_fields if name in given}
    try:
        return MonitoringConfig(**fields, data=data, thresholds=Thresholds(**thresholds))
    except ValidationError as exc:
        raise ConfigError(describe_problems(exc)) from None


def describe_problems(exc: ValidationError) -> str:
    """'invalid monitoring configuration: field: message (got value); ...'."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "config"
        message = str(err["msg"]).removeprefix("Value error, ")
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        lines.append(f"{where}: {message}{got}")
    return "invalid monitoring configuration: " + "; ".join(lines)
