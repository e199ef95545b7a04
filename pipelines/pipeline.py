"""The whole training pipeline as one validated config, and a local runner without Airflow.

:class:`PipelineConfig` holds one config object per step. The DAG builds it from its
Params (:func:`from_params`), the CLI from its options, tests directly. :func:`run_pipeline`
chains the same step functions the DAG tasks call, for scripts, notebooks and the CLI.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.accounting import ROW_FATES, row_accounting  # noqa: F401  (re-exported)
from pipelines.cleaning.config import CleaningConfig
from pipelines.compute.dask_cluster import DaskConfig
from pipelines.constants import DEFAULT_EXPERIMENT
from pipelines.data.config import IngestConfig
from pipelines.errors import ConfigError
from pipelines.timing import log_step_timings, timed_step
from pipelines.features.config import FeatureConfig
from pipelines.features.weighting import WeightingConfig
from pipelines.tracking.promotion import PromotionConfig
from pipelines.training.config import TrainConfig
from pipelines.tuning.config import TuningConfig

log = logging.getLogger(__name__)

BASELINE_MODEL = "popularity"


class PipelineConfig(BaseModel):
    """Every step's config for one pipeline run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ingest: IngestConfig = Field(default_factory=lambda: IngestConfig(source="synthetic"))
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    candidates: tuple[TrainConfig, ...] = Field(default_factory=lambda: (TrainConfig(model="als"),))
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    dask: DaskConfig = Field(default_factory=DaskConfig)
    tuning: TuningConfig | None = Field(None, description="Optuna tuning of each candidate before its final fit")
    experiment: str = DEFAULT_EXPERIMENT

    @model_validator(mode="after")
    def _metadata_for_content_models(self) -> "PipelineConfig":
        from pipelines.models import model_class

        needy = [c.model for c in self.candidates if model_class(c.model).requires_item_features]
        if needy and not (source_has_item_metadata(self.ingest) and self.features.content_features):
            reason = (
                f"source {self.ingest.source!r} has no item metadata (give items_path)"
                if self.features.content_features
                else "features.content_features is off"
            )
            raise ValueError(
                f"models: {', '.join(needy)} need item metadata (genres, titles or tags), but {reason}"
            )
        return self

    @field_validator("candidates")
    @classmethod
    def _with_baseline(cls, value: tuple[TrainConfig, ...]) -> tuple[TrainConfig, ...]:
        if not value:
            raise ValueError("candidates: at least one model is needed")
        names = [c.model for c in value]
        if len(set(names)) != len(names):
            raise ValueError(f"candidates: each model once, got {names}")
        if BASELINE_MODEL not in names:
            template = value[0]
            value = (*value, TrainConfig(model=BASELINE_MODEL, k=template.k, plot_ks=template.plot_ks))
        return value


def source_has_item_metadata(ingest: IngestConfig) -> bool:
    """Whether the source brings item metadata (titles, genres, tags) for content models."""
    return ingest.source in ("synthetic", "movielens", "movielens100k") or bool(ingest.items_path)


def from_params(params: Mapping[str, Any]) -> PipelineConfig:
    """Build the pipeline config from the DAG's Params (or the same keys from the CLI, a test).

    Each selected family gets its own defaults plus only its entry of ``model_params``; the
    shared ``seed`` and ``use_gpu`` reach a family only when set (unset: the family's default).
    Keys missing or None take the form's default. Raises ConfigError naming each invalid
    parameter, and for ``model_params`` the family and the field.
    """
    from pipelines.params import check_params, defaults

    check_params({key: value for key, value in params.items() if key != "model_params"})
    p = {**defaults(), **{k: v for k, v in params.items() if v is not None}}
    overrides = validate_model_params(p["models"], p["model_params"])
    device = None if p["use_gpu"] is None else ("gpu" if p["use_gpu"] else "cpu")
    seeded: dict[str, Any] = {} if p["seed"] is None else {"seed": p["seed"]}
    k = int(p["k"])
    families = list(p["models"])
    if BASELINE_MODEL in overrides and BASELINE_MODEL not in families:
        families.append(BASELINE_MODEL)  # always trained; settings given for it apply to the baseline run
    try:
        ingest: dict[str, Any] = {"source": p["source"], **seeded}
        if p["source"] == "synthetic":
            ingest.update(n_users=p["synthetic_users"], n_items=p["synthetic_items"],
                          interactions_per_user=p["interactions_per_user"])
        elif p["source"] == "sql":
            ingest.update(conn_id=p["sql_conn_id"] or None, table=p["sql_table"] or None, query=p["sql_query"] or None)
        else:
            ingest["path"] = p["path"] or None
        candidates = tuple(
            candidate_config(name, overrides.get(name, {}), k=k, device=device, seed=p["seed"],
                             warm_start=bool(p["warm_start"])) for name in families
        )
        return PipelineConfig(
            ingest=IngestConfig(**ingest),
            cleaning=CleaningConfig(max_rejected_fraction=p["max_rejected_fraction"], kcore=p["kcore"]),
            features=FeatureConfig(split=p["split"], stratify_by=p["stratify_by"], test_fraction=p["test_fraction"],
                                   cutoff=p["split_cutoff"], max_cold_fraction=p["max_cold_fraction"], **seeded),
            candidates=candidates,
            promotion=PromotionConfig(metric=f"{p['metric']}@{k}", margin=p["promotion_margin"],
                                      require_approval=bool(p["require_approval"])),
            dask=DaskConfig(gpu=bool(p["use_gpu"])),
            tuning=TuningConfig(n_trials=p["n_trials"], metric=f"ndcg@{k}", **seeded) if p["tune"] else None,
        )
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def candidate_config(
    model: str, overrides: Mapping[str, Any], k: int = 10, device: str | None = None, seed: int | None = None,
    warm_start: bool = False,
) -> TrainConfig:
    """One candidate: ``model`` with only ``overrides`` on top of its own defaults.

    ``overrides`` is the family's ``model_params`` entry; its ``weighting`` key changes fields of
    the family's preferred weighting (``{"k1": 50}`` keeps itemknn on BM25). ``seed`` and
    ``device`` apply where given and the family has no value of its own in ``overrides``;
    ``warm_start`` asks to start from the champion (see :mod:`pipelines.training.warm_start`).
    """
    from pipelines.models import model_class
    from pipelines.params import WEIGHTING_KEY

    params = dict(overrides)
    weighting = params.pop(WEIGHTING_KEY, None)
    if weighting is not None:
        weighting = {**model_class(model).preferred_weighting, **weighting}
    if seed is not None:
        params.setdefault("seed", seed)
    return TrainConfig(model=model, params=params, weighting=weighting, k=k, device=device, warm_start=warm_start)


def validate_model_params(models: Sequence[str], model_params: Any) -> dict[str, dict[str, Any]]:
    """Check ``model_params`` (family -> settings) against each family's config; return a plain copy.

    Refused, naming the family and the field: a family that does not exist or is not trained in
    this run (``models`` plus the popularity baseline; a setting that would silently do nothing
    is refused, not ignored), a field the family's config does not have, a value its config
    refuses, and anything the form's JSON schema refuses. Raises ConfigError.
    """
    from pipelines.models import model_class, model_names
    from pipelines.params import WEIGHTING_KEY, param_specs, schema_problems

    if not isinstance(model_params, Mapping):
        raise ConfigError(
            'model_params must be an object of family -> settings, e.g. {"ease": {"regularization": 300}}; '
            f"got {model_params!r}"
        )
    trained = [*models, *([] if BASELINE_MODEL in models else [BASELINE_MODEL])]
    problems: list[str] = []
    for family, settings in model_params.items():
        where = f"model_params.{family}"
        if family not in model_names():
            problems.append(f"{where}: unknown model family; allowed: {', '.join(model_names())}")
        elif family not in trained:
            problems.append(f"{where}: {family} is not trained in this run (models: {', '.join(trained)}); "
                            "select it in models or remove its settings")
        elif not isinstance(settings, Mapping):
            problems.append(f"{where}: must be an object of field -> value, got {settings!r}")
        else:
            fields = dict(settings)
            weighting = fields.pop(WEIGHTING_KEY, None)
            config_class = model_class(family).config_class
            try:
                config_class(**fields)
            except ValidationError as exc:
                allowed = ", ".join([*config_class.model_fields, WEIGHTING_KEY])
                problems.extend(_field_problems(where, exc, f"fields of {family}: {allowed}"))
            if weighting is not None:
                try:
                    WeightingConfig.model_validate(weighting)
                except ValidationError as exc:
                    allowed = ", ".join(WeightingConfig.model_fields)
                    problems.extend(_field_problems(f"{where}.{WEIGHTING_KEY}", exc, f"fields: {allowed}"))
    if not problems:
        problems = schema_problems("model_params", model_params, param_specs()["model_params"])
    if problems:
        raise ConfigError("invalid model_params: " + "; ".join(problems))
    return {family: dict(settings) for family, settings in model_params.items()}


def _field_problems(where: str, exc: ValidationError, allowed: str) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join([where, *(str(part) for part in err["loc"])])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(f"{loc}: no such field ({allowed})")
        else:
            shown = "input" in err and not isinstance(err["input"], dict) and "got" not in msg
            lines.append(f"{loc}: {msg}" + (f" (got {err['input']!r})" if shown else ""))
    return lines


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: 'Config.field: message (got value)'."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(config)"
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        lines.append(f"{exc.title}.{where}: {err['msg']}{got}")
    return "invalid configuration: " + "; ".join(lines)


def run_pipeline(
    config: PipelineConfig,
    run_key: str,
    out_root: str | None = None,
    track: bool = True,
    register: bool = False,
    tracking_uri: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run ingest -> clean -> features -> train (every candidate) [-> register and promote].

    The same step functions as the DAG, in one process. With ``track`` every candidate is
    logged to MLflow under a parent run (created with ``tags``, e.g. ``trigger_reason``); with
    ``register`` the best is also registered and promoted. Returns every step's result.
    """
    from pipelines.cleaning.run import run_cleaning
    from pipelines.compute.dask_cluster import dask_client
    from pipelines.data.ingest import run_ingest
    from pipelines.features.run import run_features
    from pipelines.paths import lake
    from pipelines.progress import step_bar

    root = str(out_root or lake())
    timings: dict[str, dict[str, float]] = {}
    with step_bar(3 + len(config.candidates), "recsys train") as bar:
        with dask_client(config.dask):
            with timed_step("ingest", timings):
                bar.set_postfix_str("ingest")
                ingested = run_ingest(config.ingest, root, run_key)
            bar.update()
            with timed_step("clean", timings):
                bar.set_postfix_str("clean")
                cleaned = run_cleaning(config.cleaning, ingested["snapshot_uri"], root, run_key)
            bar.update()
            with timed_step("features", timings):
                bar.set_postfix_str("features")
                features = run_features(config.features, cleaned["clean_uri"], ingested["items_uri"], root, run_key)
            bar.update()
        return _train_candidates(config, run_key, root, ingested, cleaned, features, track, register, tracking_uri,
                                 timings, bar, tags)


def run_pipeline_on_split(
    config: PipelineConfig,
    run_key: str,
    train_file: str | Path,
    test_file: str | Path | None = None,
    columns: Mapping[str, str] | None = None,
    out_root: str | None = None,
    track: bool = True,
    register: bool = False,
    tracking_uri: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Like :func:`run_pipeline` on a split made elsewhere: ``train_file`` and ``test_file``.

    Both files (CSV or Parquet) are ingested and cleaned separately with the same rules; the
    features step encodes ids over both and keeps the given split. Without ``test_file`` the
    configured split is made from ``train_file``.
    """
    from pipelines.cleaning.run import run_cleaning
    from pipelines.compute.dask_cluster import dask_client
    from pipelines.data.ingest import run_ingest
    from pipelines.features.run import run_features, run_features_from_split
    from pipelines.paths import lake
    from pipelines.progress import step_bar

    root = str(out_root or lake())

    def file_config(path: str | Path) -> IngestConfig:
        fmt = "parquet" if str(path).endswith((".parquet", ".pq")) else "csv"
        extra = {"column_map": dict(columns)} if columns else {}
        return IngestConfig(source=fmt, path=str(Path(path).resolve()), **extra)

    timings: dict[str, dict[str, float]] = {}
    with dask_client(config.dask):
        with timed_step("ingest", timings):
            ingested = run_ingest(file_config(train_file), root, f"{run_key}-train")
            test_in = None if test_file is None else run_ingest(file_config(test_file), root, f"{run_key}-test")
        with timed_step("clean", timings):
            cleaned = run_cleaning(config.cleaning, ingested["snapshot_uri"], root, f"{run_key}-train")
            if test_in is not None:
                test_clean = run_cleaning(config.cleaning, test_in["snapshot_uri"], root, f"{run_key}-test")
        with timed_step("features", timings):
            if test_in is None:
                features = run_features(config.features, cleaned["clean_uri"], None, root, run_key)
            else:
                features = run_features_from_split(
                    config.features, cleaned["clean_uri"], test_clean["clean_uri"], None, root, run_key
                )
    config = config.model_copy(update={"ingest": file_config(train_file)})
    both = [cleaned] if test_file is None else [cleaned, test_clean]
    with step_bar(len(config.candidates), "recsys train") as bar:
        return _train_candidates(config, run_key, root, ingested, both, features, track, register, tracking_uri,
                                 timings, bar, tags)


def _train_candidates(config, run_key, root, ingested, cleaned, features, track, register, tracking_uri,
                      timings, bar=None, tags=None) -> dict[str, Any]:
    from pipelines.training.promote import run_register_and_promote

    tracking = open_tracking(config, run_key, tracking_uri, tags=tags) if (track or register) else None
    lineage = lineage_of(ingested, cleaned, features)
    if tracking:
        log_row_accounting(tracking, lineage)
    results = []
    for cand in config.candidates:
        if bar is not None:
            bar.set_postfix_str(f"train {cand.model}")
        results.append(train_candidate(config, cand, features["features_uri"], root, run_key, tracking, lineage))
        if bar is not None:
            bar.update()
    for result in results:
        timings.update(result.get("timings", {}))
    out: dict[str, Any] = {"ingest": ingested, "clean": cleaned if isinstance(cleaned, Mapping) else cleaned[0],
                           "features": features, "candidates": results, "rows": row_accounting(cleaned, features)}
    if register:
        with timed_step("register", timings):
            out["promotion"] = run_register_and_promote(
                results, config.promotion, features["features_uri"], run_key, tracking, lineage
            )
    out["timings"] = timings
    log_step_timings(tracking, timings)
    return out


def train_candidate(
    config: PipelineConfig,
    candidate: TrainConfig | Mapping[str, Any],
    features_uri: str,
    root: str,
    run_key: str,
    tracking: Mapping[str, str] | None,
    lineage: Mapping[str, Any],
) -> dict[str, Any]:
    """One candidate: tune it when ``config.tuning`` is set and its family has a search space
    (trials on a validation split carved from train), then fit on train (+ validation after
    tuning), evaluate once on test and log it. The fit runs where ``config.dask.fit_on`` says
    (:mod:`pipelines.training.remote`)."""
    from pipelines.training.run import run_training

    candidate = TrainConfig.model_validate(candidate)
    tuned = None
    if config.tuning is not None:
        from pipelines.tuning.run import run_tuning
        from pipelines.tuning.search_space import tunable_models

        if candidate.model in tunable_models():
            tuned = run_tuning(candidate, features_uri, config.tuning, root, run_key, tracking, dask=config.dask)
            candidate = TrainConfig.model_validate(tuned["train_config"])
    result = run_training(candidate, features_uri, root, run_key, tracking, lineage, merge_validation=tuned is not None,
                          champion=(config.promotion.registered_model, config.promotion.alias), dask=config.dask)
    if tuned is not None:
        result["tuning"] = {key: tuned[key] for key in ("best_value", "best_params", "n_trials", "n_pruned")}
    return result


def open_tracking(
    config: PipelineConfig, run_key: str, tracking_uri: str | None = None, artifact_root: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Configure MLflow and open (or reuse) the parent run of ``run_key``, logging every config
    (and ``tags``, e.g. why the run started)."""
    from pipelines.tracking.runs import open_parent_run
    from pipelines.tracking.setup import configure_mlflow

    uri, experiment_id = configure_mlflow(tracking_uri, config.experiment, artifact_root)
    parent = open_parent_run(run_key, experiment_id, params=config.model_dump(mode="json"), tags=tags,
                             tracking_uri=uri)
    return {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent}


def log_row_accounting(tracking: Mapping[str, str], lineage: Mapping[str, Any]) -> None:
    """Log the row counts of ``lineage`` as metrics (``data.<count>``) of the run's parent run."""
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    stamp = int(time.time() * 1000)
    metrics = [Metric(f"data.{key}", float(value), stamp, 0) for key, value in lineage.items()
               if key.startswith(("rows_", "duplicates_", "kcore_", "below_", "cold_"))]
    MlflowClient(tracking["tracking_uri"]).log_batch(tracking["parent_run_id"], metrics=metrics)


def lineage_of(ingested: Mapping[str, Any], cleaned: Mapping[str, Any] | Sequence[Mapping[str, Any]],
               features: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The data lineage recorded on every run (and read by the model card): snapshot hash and
    where every row went (:func:`row_accounting`; the cold test rows once ``features`` is given)."""
    return {
        "snapshot_uri": ingested["snapshot_uri"],
        "snapshot_sha256": ingested["sha256"],
        "rows_ingested": ingested["rows"],
        **row_accounting(cleaned, features),
    }
