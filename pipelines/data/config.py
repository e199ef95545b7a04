"""The ingest step's configuration, and the one way configs are validated at an entry point."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator, model_validator

from pipelines.errors import ConfigError

Source = Literal["synthetic", "csv", "parquet", "movielens", "movielens100k", "sql"]
FILE_SOURCES = ("csv", "parquet", "movielens", "movielens100k")

# Inclusive ranges; the validator's message quotes them.
_RANGES: dict[str, tuple[float, float]] = {
    "n_users": (1, 1_000_000_000),
    "n_items": (1, 10_000_000),
    "interactions_per_user": (1, 100_000),
    "n_factors": (1, 256),
    "n_partitions": (1, 100_000),
    "seed": (0, 2**63 - 1),
    "chunksize": (1, 10_000_000),
}

# Column maps per source (source column -> canonical name). ``None`` means "detect the
# canonical columns by their usual aliases" (see pipelines.data.columns).
DEFAULT_COLUMN_MAPS: dict[str, dict[str, str] | None] = {
    "synthetic": {},
    "csv": None,
    "parquet": None,
    "sql": None,
    "movielens": {"userId": "user_id", "movieId": "item_id", "rating": "rating", "timestamp": "timestamp"},
    # u.data has no header; the reader names its columns as the ML-100K README does.
    "movielens100k": {"user": "user_id", "item": "item_id", "rating": "rating", "timestamp": "timestamp"},
}


class IngestConfig(BaseModel):
    """Where interactions come from and how to read them."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    source: Source = "synthetic"
    """Kind of source: synthetic generator, CSV/Parquet file or folder, a MovieLens folder, or SQL."""
    path: str | None = None
    """File or folder to read (required for csv, parquet, movielens, movielens100k)."""
    column_map: dict[str, str] | None = None
    """Source column -> canonical name (user_id, item_id, rating, timestamp); default per source."""
    delimiter: str = ","
    """Field separator for CSV sources (one character)."""
    items_path: str | None = None
    """Optional item metadata file (CSV or Parquet: item id, title, genres, tags) for csv/parquet/sql."""

    n_users: int = 1000
    """Synthetic: number of users."""
    n_items: int = 500
    """Synthetic: number of items."""
    interactions_per_user: float = 40.0
    """Synthetic: mean interactions per user (counts vary per user, capped at n_items)."""
    n_factors: int = 8
    """Synthetic: dimension of the planted user and item taste vectors."""
    n_partitions: int | None = None
    """Synthetic: number of user partitions; None picks about one million rows per partition."""
    seed: int = 42
    """Synthetic: seed; the same seed and sizes give the same data."""

    conn_id: str | None = None
    """SQL: id of an Airflow connection holding the database URL (read from ``AIRFLOW_CONN_<ID>``
    or Airflow's secrets backend when the step runs): what DAG runs use, so no URL travels."""
    url: SecretStr | None = None
    """SQL: SQLAlchemy URL, e.g. postgresql+psycopg2://user:pw@host:5432/db, for the CLI and scripts.
    A secret: masked in dumps, logs and manifests, so it cannot cross XCom (use ``conn_id`` there)."""
    table: str | None = None
    """SQL: table to read (optionally schema-qualified, "schema.table"); exclusive with query."""
    query: str | None = None
    """SQL: SELECT statement to read; exclusive with table."""
    chunksize: int = 50_000
    """SQL: rows fetched and written per chunk."""

    @field_validator(*_RANGES, mode="after")
    @classmethod
    def _in_range(cls, value: Any, info: Any) -> Any:
        low, high = _RANGES[info.field_name]
        if value is not None and not low <= value <= high:
            raise ValueError(f"{info.field_name} must be in [{format_bound(low)}, {format_bound(high)}], got {value!r}")
        return value

    @field_validator("delimiter", mode="after")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError(f"delimiter must be exactly one character, got {value!r}")
        return value

    @model_validator(mode="after")
    def _source_requirements(self) -> IngestConfig:
        if self.source in FILE_SOURCES and not self.path:
            raise ValueError(f"path is required for source={self.source!r} (a file or folder to read)")
        if self.source == "sql":
            if bool(self.url) == bool(self.conn_id):
                raise ValueError("source='sql' needs exactly one of conn_id (an Airflow connection id) or url")
            if bool(self.table) == bool(self.query):
                raise ValueError("source='sql' needs exactly one of table or query")
        if self.source == "synthetic" and self.interactions_per_user > self.n_items:
            raise ValueError(
                f"interactions_per_user must be in [1, n_items={self.n_items}], got {self.interactions_per_user:g}"
            )
        return self

    def effective_column_map(self) -> dict[str, str] | None:
        """The column map in force: the configured one, else the source's default (None = detect)."""
        if self.column_map is not None:
            return dict(self.column_map)
        default = DEFAULT_COLUMN_MAPS[self.source]
        return None if default is None else dict(default)

    def describe(self) -> str:
        """A one-line description of the source for manifests and logs (no secrets)."""
        if self.source == "synthetic":
            return (
                f"synthetic(n_users={self.n_users}, n_items={self.n_items}, "
                f"interactions_per_user={self.interactions_per_user:g}, n_factors={self.n_factors}, seed={self.seed})"
            )
        if self.source == "sql":
            if self.conn_id:
                where = f"conn_id={self.conn_id}"
            else:
                from sqlalchemy.engine import make_url

                where = make_url(self.url.get_secret_value()).render_as_string(hide_password=True)
            return f"sql({where}, {'table=' + self.table if self.table else 'query=' + repr(self.query)})"
        return f"{self.source}({self.path})"


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def format_bound(value: float) -> str:
    """A range bound as people write it: 1000000 rather than 1e+06, 0.05 rather than 0.050000."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def validate_config(model: type[ConfigT], value: ConfigT | dict[str, Any] | None, step: str) -> ConfigT:
    """Validate ``value`` (a dict, None for defaults, or an instance) as ``model``.

    Raises:
        ConfigError: listing every invalid field with its message (field name and allowed range).
    """
    if isinstance(value, model):
        return value
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{step} config must be a dict or {model.__name__}, got {type(value).__name__}")
    try:
        return model.model_validate(value or {})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "config"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{field}: {message}" if field not in message else message)
        raise ConfigError(f"invalid {step} config: " + "; ".join(problems)) from exc


def load_ingest_config(config: IngestConfig | dict[str, Any] | None) -> IngestConfig:
    """Validate an ingest config given as a dict (Airflow Params, CLI) or an IngestConfig.

    Raises:
        ConfigError: naming each invalid field and its allowed range.
    """
    return validate_config(IngestConfig, config, "ingest")
