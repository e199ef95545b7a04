"""docker/docker-compose.yml checked against the code, statically (no Docker engine here).

Services and images exist as build targets, the environment variables are the names the code
reads, ports agree between commands, URLs and published mappings, no secret is written in the
file, every secret it needs is documented in .env.example, and the images run as non-root.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipelines import constants

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
AIRFLOW_SERVICES = {"airflow-init", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer"}
EXPECTED = AIRFLOW_SERVICES | {"postgres", "mlflow", "dask-scheduler", "dask-worker", "dask-worker-gpu", "api"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN", re.I)
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def _targets(dockerfile: Path) -> dict[str, str]:
    """Build target -> its instructions."""
    text = dockerfile.read_text()
    parts = re.split(r"^FROM .+? AS (\S+)\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return {k: str(v) for k, v in env.items()}


def _command(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def _flag(cmd: list[str], flag: str) -> str | None:
    return cmd[cmd.index(flag) + 1] if flag in cmd else None


def test_services_and_images_exist(compose):
    services = compose["services"]
    assert set(services) == EXPECTED
    targets = _targets(DOCKER / "Dockerfile")
    for name, service in services.items():
        if name == "postgres":
            continue
        build = service["build"]
        dockerfile = ROOT / build.get("dockerfile", "Dockerfile") if build["context"] == ".." else None
        assert dockerfile is not None and dockerfile.exists(), name
        if "target" in build:
            assert build["target"] in targets, (name, build["target"])
            assert re.search(r"^USER (?!root)\S+", targets[build["target"]], re.M), f"{name} runs as root"
        else:
            assert re.search(r"^USER (?!root)\S+", dockerfile.read_text(), re.M), f"{name} runs as root"
    gpu = services["dask-worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    gpu_file = (ROOT / gpu["build"]["dockerfile"]).read_text()
    assert "dask-cuda" in (ROOT / "requirements-gpu.lock").read_text() and "requirements-gpu.lock" in gpu_file
    assert "cupy" in (ROOT / "requirements-gpu.lock").read_text() and "download.pytorch.org/whl/cu" in gpu_file


def test_environment_names_are_the_ones_the_code_reads(compose):
    services = compose["services"]
    worker_env = _env(services["dask-worker"])
    for name in ("airflow-scheduler", "api", "dask-worker", "dask-worker-gpu"):
        env = _env(services[name])
        assert env[constants.ENV_HOME] == "/var/lib/recsys", name
        assert env[constants.ENV_TRACKING_URI] == "http://mlflow:5000", name
        assert env[constants.ENV_DASK_SCHEDULER] == "tcp://dask-scheduler:8786", name
    assert worker_env["MLFLOW_TRACKING_USERNAME"] and worker_env["MLFLOW_TRACKING_PASSWORD"]
    plugin = (ROOT / "plugins" / "recsys_plugin.py").read_text()
    assert "RECSYS_MLFLOW_UI_URL" in plugin and "RECSYS_MLFLOW_UI_URL" in _env(services["airflow-api-server"])
    # Every Airflow component shares one JWT secret, database and executor.
    shared = {(e["AIRFLOW__API_AUTH__JWT_SECRET"], e["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], e["AIRFLOW__CORE__EXECUTOR"])
              for e in (_env(services[n]) for n in AIRFLOW_SERVICES)}
    assert len(shared) == 1
    for name in AIRFLOW_SERVICES:
        env = _env(services[name])
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "${AIRFLOW_DEV_ALL_ADMINS:-False}"
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].startswith("${AIRFLOW_USERS:?")


def test_ports_agree_between_commands_urls_and_mappings(compose):
    services = compose["services"]
    api_server = _command(services["airflow-api-server"])
    execution = _env(services["airflow-scheduler"])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert execution == f"http://airflow-api-server:{_flag(api_server, '--port')}/execution/"
    assert _flag(_command(services["dask-scheduler"]), "--port") == "8786"
    entrypoint = (DOCKER / "mlflow-entrypoint.sh").read_text()
    assert "--port 5000" in entrypoint and "--app-name basic-auth" in entrypoint
    serve = _command(services["api"])
    assert serve[:2] == ["recsys", "serve"] and _flag(serve, "--tracking-uri") == "http://mlflow:5000"
    published = {}
    for name, service in services.items():
        for mapping in service.get("ports", []):
            host, host_port, container_port = mapping.split(":")
            assert host == "127.0.0.1", f"{name} publishes {mapping} beyond loopback"
            published[name] = container_port
    assert published == {"mlflow": "5000", "airflow-api-server": _flag(api_server, "--port"), "api": _flag(serve, "--port"),
                         "dask-scheduler": "8787"}
    for name, service in services.items():
        if name != "airflow-init":
            assert "healthcheck" in service, f"{name} has no health check"


def test_no_secret_in_the_file_and_every_variable_documented(compose):
    text = "\n".join(line for line in (DOCKER / "docker-compose.yml").read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    example = dict(line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            masked = VARIABLE.sub("<var>", value)
            for credential in re.findall(r"://[^/@]*?:([^@/]+)@", masked):  # user:password@host
                assert credential == "<var>", f"{name}.{key} embeds a password"
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                match = VARIABLE.fullmatch(value)
                assert match and match.group(2) == ":?", f"{name}.{key} must be a required variable from .env"
    for variable, _, _ in VARIABLE.findall(text):
        assert variable in example, f"{variable} is used by the compose file but not in .env.example"
    for variable, value in example.items():
        if SECRET_NAME.search(variable):
            assert value == "", f".env.example must not ship a value for {variable}"
