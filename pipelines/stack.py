"""The production topology on one machine: ``python -m pipelines.stack up|down|status``.

``up`` starts, each in its own process group and all on 127.0.0.1: Airflow (scheduler, API
server, DAG processor, triggerer; LocalExecutor, metadata on PostgreSQL), ``mlflow server``
(backend store and basic-auth user store on PostgreSQL, artifacts proxied into a local folder
that stands in for object storage), a Dask scheduler with two workers that the tasks send their
data work to, and ``recsys serve`` when this checkout has it. ``down`` stops each by its
process group, then any task process those left (found by the stack id every process
inherits). Logs of every service, Airflow's task logs included, go to one folder.

Every setting comes from the environment (the Makefile exports defaults); nothing here is a
default address or password. Secrets not given (the Airflow JWT secret, the MLflow admin
password, Flask's secret key) are generated once into ``<state>/secrets`` with mode 0600.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipelines.errors import ConfigError

HOST = "127.0.0.1"
STACK_ID = "RECSYS_STACK_ID"  # inherited by every process we start: how down finds stragglers

#: variables ``up`` needs; it refuses to start without them, naming the missing ones.
REQUIRED = (
    "RECSYS_HOME",
    "AIRFLOW_HOME",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "RECSYS_MLFLOW_BACKEND_URI",
    "RECSYS_MLFLOW_AUTH_URI",
    "RECSYS_ARTIFACT_ROOT",
    "RECSYS_AIRFLOW_PORT",
    "RECSYS_MLFLOW_PORT",
    "RECSYS_DASK_PORT",
    "RECSYS_API_PORT",
)


@dataclass
class Service:
    """One long-running process of the topology."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready: Callable[[], bool] | None = None


def _setting(env: dict[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set (the Makefile exports a default; see README 'Architecture')")
    return value


def state_dir(env: dict[str, str] | None = None) -> Path:
    """``$RECSYS_HOME/stack``: pid files, logs, generated secrets and ``stack.json``."""
    env = dict(os.environ if env is None else env)
    return Path(_setting(env, "RECSYS_HOME")).expanduser().resolve() / "stack"


def _secret(state: Path, env: dict[str, str], name: str) -> str:
    """``$name`` if set, else a random value generated once into ``<state>/secrets/<name>`` (0600)."""
    if env.get(name):
        return env[name]
    path = state / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(64))  # 64 bytes: the JWT HMAC (SHA-512) minimum
    return path.read_text().strip()


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` if it is missing (other backends: nothing)."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    if not parsed.drivername.startswith("postgresql") or not parsed.database:
        return
    admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            found = conn.execute(sa.text("select 1 from pg_database where datname = :n"), {"n": parsed.database}).first()
            if not found:
                conn.execute(sa.text(f'create database "{parsed.database}"'))
    finally:
        admin.dispose()


def _http_ok(url: str, auth: tuple[str, str] | None = None) -> Callable[[], bool]:
    def check() -> bool:
        import requests

        try:
            return requests.get(url, timeout=3, auth=auth).status_code == 200
        except requests.RequestException:
            return False

    return check


def _airflow_healthy(url: str) -> Callable[[], bool]:
    """Every Airflow component has sent a heartbeat (the API server answers before they do)."""

    def check() -> bool:
        import requests

        try:
            health = requests.get(url, timeout=3).json()
        except (requests.RequestException, ValueError):
            return False
        return all(health.get(part, {}).get("status") == "healthy"
                   for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"))

    return check


def _port_open(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex((HOST, port)) == 0

    return check


def _dask_workers(address: str, count: int) -> Callable[[], bool]:
    def check() -> bool:
        from distributed import Client

        try:
            with Client(address, timeout="5s") as client:
                return len(client.scheduler_info()["workers"]) >= count
        except OSError:
            return False

    return check


def _serve_available() -> bool:
    """Whether this checkout has ``recsys serve`` (the online API). Until it does, the stack
    runs without it and ``stack.json`` has ``api_url: null``; once the subcommand is registered
    in ``pipelines.cli.SUBCOMMANDS`` it is started with the rest, nothing else to wire."""
    from pipelines.cli import SUBCOMMANDS

    return "serve" in SUBCOMMANDS


def plan_services(env: dict[str, str] | None = None) -> tuple[list[Service], dict[str, object]]:
    """The services to start and what clients need to reach them (written to ``stack.json``)."""
    env = dict(os.environ if env is None else env)
    missing = [name for name in REQUIRED if not env.get(name, "").strip()]
    if missing:
        raise ConfigError(f"cannot start the stack: {', '.join(missing)} not set")
    state = state_dir(env)
    logs = state / "logs"
    ports = {name: int(_setting(env, f"RECSYS_{name.upper()}_PORT")) for name in ("airflow", "mlflow", "dask", "api")}
    bindir = str(Path(sys.executable).parent)
    mlflow_url = f"http://{HOST}:{ports['mlflow']}"
    airflow_url = f"http://{HOST}:{ports['airflow']}"
    dask_address = f"tcp://{HOST}:{ports['dask']}"
    admin_user = env.get("MLFLOW_TRACKING_USERNAME") or "admin"
    admin_password = _secret(state, env, "MLFLOW_TRACKING_PASSWORD")

    common = {
        **env,
        "PATH": f"{bindir}:{env.get('PATH', '')}",
        STACK_ID: str(state),
        "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")) if p),
    }
    auth_ini = state / "mlflow_basic_auth.ini"
    mlflow_env = {
        **common,
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": _secret(state, env, "MLFLOW_FLASK_SERVER_SECRET_KEY"),
    }
    airflow_env = {
        **common,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(ports["airflow"]),
        "AIRFLOW__API__BASE_URL": airflow_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{airflow_url}/execution/",
        # API server and scheduler sign and check task tokens with the same secret.
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(state, env, "AIRFLOW__API_AUTH__JWT_SECRET"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(logs / "airflow-tasks"),
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_TRACKING_USERNAME": admin_user,
        "MLFLOW_TRACKING_PASSWORD": admin_password,
        "RECSYS_MLFLOW_UI_URL": env.get("RECSYS_MLFLOW_UI_URL") or mlflow_url,
        "RECSYS_DASK_SCHEDULER": dask_address,
    }
    # The artifacts are proxied by the server, so experiments must not name a local folder.
    airflow_env.pop("RECSYS_ARTIFACT_ROOT", None)
    airflow = [f"{bindir}/airflow"]
    # --skip-serve-logs: the log servers listen on every interface; with LocalExecutor the API
    # server reads task logs straight from the shared log folder, so they are not needed.
    services = [
        Service("mlflow", [f"{bindir}/mlflow", "server", "--host", HOST, "--port", str(ports["mlflow"]),
                           "--workers", "1", "--backend-store-uri", _setting(env, "RECSYS_MLFLOW_BACKEND_URI"),
                           "--serve-artifacts", "--artifacts-destination",
                           str(Path(_setting(env, "RECSYS_ARTIFACT_ROOT")).expanduser().resolve()),
                           "--app-name", "basic-auth"],
                mlflow_env, _http_ok(f"{mlflow_url}/health")),
        Service("dask-scheduler", [f"{bindir}/dask", "scheduler", "--host", HOST, "--port", str(ports["dask"]),
                                   "--dashboard-address", f"{HOST}:0"],
                common, _port_open(ports["dask"])),
        *[
            Service(f"dask-worker-{i}", [f"{bindir}/dask", "worker", dask_address, "--host", HOST, "--nworkers", "1",
                                         "--nthreads", env.get("RECSYS_DASK_THREADS", "1"),
                                         "--memory-limit", env.get("RECSYS_DASK_MEMORY", "auto"),
                                         "--dashboard-address", f"{HOST}:0", "--name", f"worker-{i}"],
                    common)
            for i in (1, 2)
        ],
        Service("airflow-api-server", [*airflow, "api-server", "--host", HOST, "--port", str(ports["airflow"])],
                airflow_env, _http_ok(f"{airflow_url}/api/v2/monitor/health")),
        Service("airflow-scheduler", [*airflow, "scheduler", "--skip-serve-logs"], airflow_env),
        Service("airflow-dag-processor", [*airflow, "dag-processor"], airflow_env),
        Service("airflow-triggerer", [*airflow, "triggerer", "--skip-serve-logs"], airflow_env,
                _airflow_healthy(f"{airflow_url}/api/v2/monitor/health")),
    ]
    # Attach the readiness of the workers to the last one: both must have joined.
    services[3].ready = _dask_workers(dask_address, 2)
    api_url = None
    if _serve_available():
        api_url = f"http://{HOST}:{ports['api']}"
        services.append(Service("recsys-serve", [sys.executable, "-m", "pipelines.cli", "serve", "--host", HOST,
                                                 "--port", str(ports["api"]), "--tracking-uri", mlflow_url],
                                airflow_env, _http_ok(f"{api_url}/health")))
    info = {
        "state": str(state), "logs": str(logs), "airflow_url": airflow_url, "mlflow_url": mlflow_url,
        "dask_scheduler": dask_address, "api_url": api_url, "mlflow_username": admin_user,
        "mlflow_password_file": str(state / "secrets" / "MLFLOW_TRACKING_PASSWORD") if not env.get("MLFLOW_TRACKING_PASSWORD") else None,
    }
    auth_ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {_setting(env, 'RECSYS_MLFLOW_AUTH_URI')}\n"
        f"admin_username = {admin_user}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Without the cache every request re-hashes the password (PBKDF2): logging one model
        # is dozens of requests, and that cost minutes on a loaded machine.
        "auth_cache_ttl_seconds = 60\n"
    )
    mlflow_env["MLFLOW_AUTH_ADMIN_PASSWORD"] = admin_password  # first start creates the admin user with it
    return services, info


def _pid_file(state: Path, name: str) -> Path:
    return state / "pids" / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait(check: Callable[[], bool], seconds: float, what: str, log: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            problem = f"{what} exited with status {proc.returncode}"
            break
        if check():
            return
        time.sleep(1)
    else:
        problem = f"{what} not ready after {seconds:.0f} s"
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise ConfigError(f"{problem}; end of {log}:\n{tail}")


def up(env: dict[str, str] | None = None, timeout: float = 240.0) -> dict[str, object]:
    """Start every service and wait until each answers; returns what ``stack.json`` records."""
    env = dict(os.environ if env is None else env)
    services, info = plan_services(env)
    state = Path(str(info["state"]))
    for sub in ("logs", "pids"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    running = [s.name for s in services if _pid_file(state, s.name).exists()
               and _alive(int(_pid_file(state, s.name).read_text()))]
    if running:
        raise ConfigError(f"the stack in {state} is already running ({', '.join(running)}); run down first")
    for url in (env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], env["RECSYS_MLFLOW_BACKEND_URI"], env["RECSYS_MLFLOW_AUTH_URI"]):
        ensure_database(url)
    airflow_env = next(s.env for s in services if s.name == "airflow-scheduler")
    started: list[tuple[Service, subprocess.Popen, Path]] = []

    def start(service: Service) -> None:
        log = state / "logs" / f"{service.name}.log"
        with open(log, "a") as out:
            proc = subprocess.Popen(service.argv, env=service.env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=state)
        _pid_file(state, service.name).write_text(str(proc.pid))
        started.append((service, proc, log))

    try:
        # MLflow and Dask start while Airflow migrates its schema (both take tens of seconds).
        for service in services:
            if not service.name.startswith("airflow"):
                start(service)
        migrate_log = state / "logs" / "airflow-db-migrate.log"
        with open(migrate_log, "w") as out:
            done = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=airflow_env,
                                  stdout=out, stderr=subprocess.STDOUT, cwd=state, start_new_session=True)
        if done.returncode != 0:
            raise ConfigError(f"airflow db migrate failed; see {migrate_log}")
        for service in services:
            if service.name.startswith("airflow"):
                start(service)
        for service, proc, log in started:
            if service.ready is not None:
                _wait(service.ready, timeout, service.name, log, proc)
    except BaseException:
        down(env)
        raise
    (state / "stack.json").write_text(json.dumps(info, indent=2))
    return info


def _stop_groups(pgids: list[int], grace: float) -> None:
    """SIGTERM every process group, wait up to ``grace`` seconds for all of them, SIGKILL the rest."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in pgids:
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pgids and time.monotonic() < deadline:
            pgids = [pgid for pgid in pgids if _group_alive(pgid)]
            time.sleep(0.2)
        if not pgids:
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def leftover_processes(state: Path) -> list[int]:
    """PIDs of live processes carrying this stack's id (task processes run in their own groups)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(STACK_ID) == str(state) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def down(env: dict[str, str] | None = None, grace: float = 15.0) -> list[str]:
    """Stop every service of the stack by its process group, then its stragglers; returns the names stopped."""
    env = dict(os.environ if env is None else env)
    state = state_dir(env)
    stopped, groups = [], []
    pids = state / "pids"
    for pid_file in sorted(pids.glob("*.pid")) if pids.exists() else []:
        pid = int(pid_file.read_text())
        if _alive(pid):  # each service leads its own process group (start_new_session)
            groups.append(pid)
            stopped.append(pid_file.stem)
        pid_file.unlink()
    _stop_groups(groups, grace)
    # Task processes run in process groups of their own: found by the stack id they inherited.
    stragglers = set()
    for pid in leftover_processes(state):
        try:
            stragglers.add(os.getpgid(pid))
        except ProcessLookupError:
            continue
    _stop_groups(sorted(stragglers), grace / 4)
    return stopped


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipelines.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            info = up()
            print(json.dumps(info, indent=2))
        elif args.command == "down":
            print("stopped:", ", ".join(down()) or "nothing was running")
        else:
            state = state_dir()
            for pid_file in sorted((state / "pids").glob("*.pid")):
                pid = int(pid_file.read_text())
                print(f"{pid_file.stem:24s} pid {pid:<8d} {'running' if _alive(pid) else 'stopped'}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
