"""The whole training pipeline as one validated config, and a local runner without Airflow.

:class:`PipelineConfig` holds one config object per step. The DAG builds it from its
Params (:func:`from_params`), the CLI from its options, tests directly. :func:`run_pipeline`
chains the same step functions the DAG tasks call, for scripts, notebooks and the CLI.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.cleaning.config import CleaningConfig
from pipelines.compute.dask_cluster import DaskConfig
from pipelines.constants import DEFAULT_EXPERIMENT
from pipelines.data.config import IngestConfig
from pipelines.errors import ConfigError
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


def model_params_for(model: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``values`` that ``model``'s config accepts (factors mean nothing to popularity)."""
    from pipelines.models import model_class

    fields = model_class(model).config_class.model_fields
    return {key: value for key, value in values.items() if key in fields}


def from_params(params: Mapping[str, Any]) -> PipelineConfig:
    """Build the pipeline config from the DAG's flat Params (or the same keys from anywhere).

    Raises ConfigError naming each invalid parameter.
    """
    from pipelines.params import defaults

    p = {**defaults(), **{k: v for k, v in params.items() if v is not None}}
    device = "gpu" if p["use_gpu"] else "cpu"
    k = int(p["k"])
    try:
        ingest: dict[str, Any] = {"source": p["source"], "seed": p["seed"]}
        if p["source"] == "synthetic":
            ingest.update(n_users=p["synthetic_users"], n_items=p["synthetic_items"],
                          interactions_per_user=p["interactions_per_user"])
        elif p["source"] == "sql":
            ingest.update(url=p["sql_url"] or None, table=p["sql_table"] or None, query=p["sql_query"] or None)
        else:
            ingest["path"] = p["path"] or None
        hyper = {"factors": p["factors"], "iterations": p["iterations"], "regularization": p["regularization"], "seed": p["seed"]}
        weighting = None if p["weighting"] == "auto" else WeightingConfig(scheme=p["weighting"], alpha=p["alpha"])
        candidates = tuple(
            TrainConfig(model=name, params=model_params_for(name, hyper), weighting=weighting, k=k, device=device)
            for name in p["models"]
        )
        return PipelineConfig(
            ingest=IngestConfig(**ingest),
            cleaning=CleaningConfig(max_rejected_fraction=p["max_rejected_fraction"], kcore=p["kcore"]),
            features=FeatureConfig(split=p["split"], test_fraction=p["test_fraction"], seed=p["seed"]),
            candidates=candidates,
            promotion=PromotionConfig(metric=f"{p['metric']}@{k}", margin=p["promotion_margin"],
                                      require_approval=bool(p["require_approval"])),
            dask=DaskConfig(gpu=bool(p["use_gpu"])),
            tuning=TuningConfig(n_trials=p["n_trials"], seed=p["seed"], metric=f"ndcg@{k}") if p["tune"] else None,
        )
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


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
) -> dict[str, Any]:
    """Run ingest -> clean -> features -> train (every candidate) [-> register and promote].

    The same step functions as the DAG, in one process. With ``track`` every candidate is
    logged to MLflow under a parent run; with ``register`` the best is also registered and
    promoted. Returns every step's result.
    """
    from pipelines.cleaning.run import run_cleaning
    from pipelines.compute.dask_cluster import dask_client
    from pipelines.data.ingest import run_ingest
    from pipelines.features.run import run_features
    from pipelines.paths import lake

    root = str(out_root or lake())
    with dask_client(config.dask):
        ingested = run_ingest(config.ingest, root, run_key)
        cleaned = run_cleaning(config.cleaning, ingested["snapshot_uri"], root, run_key)
        features = run_features(config.features, cleaned["clean_uri"], ingested["items_uri"], root, run_key)
    return _train_candidates(config, run_key, root, ingested, cleaned, features, track, register, tracking_uri)


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

    root = str(out_root or lake())

    def file_config(path: str | Path) -> IngestConfig:
        fmt = "parquet" if str(path).endswith((".parquet", ".pq")) else "csv"
        extra = {"column_map": dict(columns)} if columns else {}
        return IngestConfig(source=fmt, path=str(Path(path).resolve()), **extra)

    with dask_client(config.dask):
        ingested = run_ingest(file_config(train_file), root, f"{run_key}-train")
        cleaned = run_cleaning(config.cleaning, ingested["snapshot_uri"], root, f"{run_key}-train")
        if test_file is None:
            features = run_features(config.features, cleaned["clean_uri"], None, root, run_key)
        else:
            test_in = run_ingest(file_config(test_file), root, f"{run_key}-test")
            test_clean = run_cleaning(config.cleaning, test_in["snapshot_uri"], root, f"{run_key}-test")
            features = run_features_from_split(
                config.features, cleaned["clean_uri"], test_clean["clean_uri"], None, root, run_key
            )
    config = config.model_copy(update={"ingest": file_config(train_file)})
    return _train_candidates(config, run_key, root, ingested, cleaned, features, track, register, tracking_uri)


def _train_candidates(config, run_key, root, ingested, cleaned, features, track, register, tracking_uri) -> dict[str, Any]:
    from pipelines.training.promote import run_register_and_promote

    tracking = open_tracking(config, run_key, tracking_uri) if (track or register) else None
    lineage = lineage_of(ingested, cleaned)
    results = [
        train_candidate(config, cand, features["features_uri"], root, run_key, tracking, lineage)
        for cand in config.candidates
    ]
    out: dict[str, Any] = {"ingest": ingested, "clean": cleaned, "features": features, "candidates": results}
    if register:
        out["promotion"] = run_register_and_promote(
            results, config.promotion, features["features_uri"], run_key, tracking, lineage
        )
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
    tuning), evaluate once on test and log it."""
    from pipelines.training.run import run_training

    candidate = TrainConfig.model_validate(candidate)
    tuned = None
    if config.tuning is not None:
        from pipelines.tuning.run import run_tuning
        from pipelines.tuning.search_space import tunable_models

        if candidate.model in tunable_models():
            tuned = run_tuning(candidate, features_uri, config.tuning, root, run_key, tracking, dask=config.dask)
            candidate = TrainConfig.model_validate(tuned["train_config"])
    result = run_training(candidate, features_uri, root, run_key, tracking, lineage, merge_validation=tuned is not None)
    if tuned is not None:
        result["tuning"] = {key: tuned[key] for key in ("best_value", "best_params", "n_trials", "n_pruned")}
    return result


def open_tracking(config: PipelineConfig, run_key: str, tracking_uri: str | None = None) -> dict[str, str]:
    """Configure MLflow and open (or reuse) the parent run of ``run_key``, logging every config."""
    from pipelines.tracking.runs import open_parent_run
    from pipelines.tracking.setup import configure_mlflow

    uri, experiment_id = configure_mlflow(tracking_uri, config.experiment)
    parent = open_parent_run(run_key, experiment_id, params=config.model_dump(mode="json"))
    return {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent}


def lineage_of(ingested: Mapping[str, Any], cleaned: Mapping[str, Any]) -> dict[str, Any]:
    """The data lineage recorded on every run: snapshot hash, row and quarantine counts."""
    return {
        "snapshot_uri": ingested["snapshot_uri"],
        "snapshot_sha256": ingested["sha256"],
        "rows_ingested": ingested["rows"],
        "rows_clean": cleaned["rows_clean"],
        "rows_quarantined": cleaned["rows_quarantined"],
        "duplicates_dropped": cleaned["duplicates_dropped"],
    }
