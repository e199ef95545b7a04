"""Every exception the platform raises on purpose lives here."""

from __future__ import annotations


class RecsysError(Exception):
    """Base class for errors raised by the platform."""


class ConfigError(RecsysError, ValueError):
    """A step configuration is invalid; the message names the parameter and the allowed range."""


class DataError(RecsysError, ValueError):
    """Input data is unusable; the message names the file, column or row at fault."""


class RejectedFractionError(DataError):
    """Cleaning quarantined more rows than the configured ceiling allows."""


class ModelNotFittedError(RecsysError, RuntimeError):
    """A model was asked to score or recommend before fit()."""


class UnknownModelError(ConfigError):
    """A model name that the registry of model families does not know."""


class PromotionError(RecsysError, RuntimeError):
    """Registering or promoting a model failed; the serving alias was left untouched."""


class PartitionBusyError(RecsysError, RuntimeError):
    """Another live process is writing the same lake partition (the same run key)."""


class ColdTestRowsError(DataError):
    """Too many held-out rows belong to users or items absent from training to evaluate on."""


class ServingError(RecsysError, RuntimeError):
    """Serving or batch scoring cannot proceed (no model under the alias, a bundle that does not load)."""


class WarmStartError(ConfigError):
    """A fit cannot start from the given previous model (another family, other parameter shapes, or a
    family that cannot warm start); the message says which and what to do."""


class WorkerMemoryError(ConfigError):
    """The Dask workers stalled at their memory limit (paused with nothing running); the message
    names each worker's limit and memory and what to change. A retry would stall again."""
