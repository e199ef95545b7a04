"""Configuration of the train step: which model, the overrides of its defaults, weighting, K."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.features.weighting import WeightingConfig


class TrainConfig(BaseModel):
    """One candidate model's training and evaluation settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("als", description="model family name (see pipelines.models.model_names())")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of the family's hyperparameters; every other field keeps its config class's default",
    )
    weighting: WeightingConfig | None = Field(
        None, description="confidence weighting of the training matrix; None: the model family's preferred one"
    )
    k: int = Field(10, ge=1, le=1000, description="cut-off K of the headline metrics")
    plot_ks: tuple[int, ...] = Field((1, 5, 10, 20, 50), description="K values of the metric-at-K plot")
    device: str | None = Field(
        None,
        description="cpu, gpu or auto for every family that has a device; a GPU request without a GPU falls back "
        "to CPU; None: each family's own default (a device in params wins either way)",
    )
    warm_start: bool = Field(
        False,
        description="start from the current champion's parameters for the users and items it shares with this "
        "run, when the champion is of the same family and the family can warm start (else a cold fit, with the "
        "reason in the run's tags); see pipelines.training.warm_start",
    )

    @field_validator("model")
    @classmethod
    def _model_known(cls, value: str) -> str:
        from pipelines.models import model_names

        if value not in model_names():
            raise ValueError(f"unknown model {value!r}; allowed: {', '.join(model_names())}")
        return value

    @field_validator("device")
    @classmethod
    def _device_known(cls, value: str | None) -> str | None:
        if value not in (None, "cpu", "gpu", "auto"):
            raise ValueError(f"device must be cpu, gpu or auto; got {value!r}")
        return value

    @model_validator(mode="after")
    def _params_valid(self) -> "TrainConfig":
        from pipelines.models import create_model

        create_model(self.model, self.model_params())  # raises ConfigError naming the parameter
        return self

    def resolved_weighting(self) -> WeightingConfig:
        """The weighting to apply: the configured one, else the family's ``preferred_weighting``."""
        if self.weighting is not None:
            return self.weighting
        from pipelines.models import model_class

        return WeightingConfig(**model_class(self.model).preferred_weighting)

    def model_params(self) -> dict[str, Any]:
        """The overrides passed to the model: ``params``, plus ``device`` when set and the family has one."""
        from pipelines.models import model_class

        params = dict(self.params)
        if self.device is not None and "device" in model_class(self.model).config_class.model_fields:
            params.setdefault("device", self.device)
        return params
