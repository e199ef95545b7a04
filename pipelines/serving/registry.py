"""Find the version behind an alias and load its bundle, straight from the registered artifacts.

Serving and batch scoring read the bundle folder the pyfunc was logged with (its
``artifacts/`` entry), not the pyfunc wrapper: no MLflow model loading, no pandas in the
request path. Downloads are cached per version under the platform home, written to a
temporary folder and renamed into place, so a crashed download never looks complete.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def alias_version(client: Any, name: str, alias: str) -> str | None:
    """The version ``name@alias`` points to; None only when the model or alias does not exist.

    Any other registry error (a locked database, a network failure) is raised: callers must
    not mistake a transient failure for "no champion".
    """
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        # A missing model is RESOURCE_DOES_NOT_EXIST; a missing alias on an existing model comes back
        # from the SQL store as INVALID_PARAMETER_VALUE "Registered model alias X not found."
        if code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc.message)):
            return None
        raise


def cache_root() -> Path:
    """Where downloaded versions are kept: ``<home>/serving/models``."""
    from pipelines.paths import home

    return home() / "serving" / "models"


def bundle_folder(model_dir: Path) -> Path:
    """The bundle folder inside a downloaded pyfunc model directory.

    Read from the ``MLmodel`` file's python_function artifacts; a model logged differently is
    searched for its ``bundle.json``. Raises FileNotFoundError when there is none.
    """
    import yaml

    from pipelines.tracking.pyfunc import BUNDLE_ARTIFACT

    mlmodel = model_dir / "MLmodel"
    if mlmodel.exists():
        flavors = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {})
        artifacts = flavors.get("python_function", {}).get("artifacts") or {}
        entry = artifacts.get(BUNDLE_ARTIFACT)
        if entry and (model_dir / entry["path"] / "bundle.json").exists():
            return model_dir / entry["path"]
    found = sorted(model_dir.rglob("bundle.json"), key=lambda p: len(p.parts))
    if not found:
        raise FileNotFoundError(f"{model_dir} holds no model bundle (no bundle.json in its artifacts)")
    return found[0].parent


def download_version(tracking_uri: str, name: str, version: str, cache: Path | None = None) -> Path:
    """The local bundle folder of registered version ``name``/``version`` (downloaded once)."""
    import mlflow

    target = (cache or cache_root()) / _safe(name) / str(version)
    if (target / "MLmodel").exists() or (target / "bundle.json").exists():
        return bundle_folder(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    try:
        # Resolved through a client on this tracking URI: a models:/ URI would go through the
        # process-wide registry URI, which may name another store.
        client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
        source = client.get_model_version_download_uri(name, str(version))
        mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging), tracking_uri=tracking_uri)
        try:
            staging.rename(target)
        except OSError:  # another process finished the same download first: use its copy
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("downloaded %s v%s to %s", name, version, target)
    return bundle_folder(target)


def load_version(tracking_uri: str, name: str, version: str, cache: Path | None = None):
    """The :class:`~pipelines.serving.bundle.RecommenderBundle` of a registered version."""
    from pipelines.serving.bundle import RecommenderBundle

    return RecommenderBundle.load(download_version(tracking_uri, name, version, cache))


def _safe(name: str) -> str:
    from pipelines.paths import run_key

    return run_key(name)
