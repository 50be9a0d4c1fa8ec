"""Start, stop and inspect the services of the local stack, each under ``settings.state_dir``."""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from cloudfree.errors import ServiceError
from cloudfree.localstack._postgres import (
    API_ROLE,
    PASSWORD_FILE,
    PG_DATABASE,
    _bootstrap_database,
    _prepare_pg_dirs,
    _start_postgres,
    _stop_postgres,
)
from cloudfree.localstack._processes import (
    Echo,
    _bin,
    _child_env,
    _http_ok,
    _is_ours,
    _locked,
    _log_file,
    _pid_file,
    _port_in_use,
    _private_file,
    _read_pid,
    _reap,
    _root,
    _secret_from_file,
    _spawn,
    _terminate,
    _wait_ready,
)
from cloudfree.settings import (
    CREDENTIALS_FILE,
    READONLY_CREDENTIALS_FILE,
    STAC_TOKEN_FILE,
    Settings,
)

RUNNING_GRACE_S = 10.0  # how long an already running service may take to answer
#: SeaweedFS's identities besides the read/write one from its environment: the read-only one.
S3_CONFIG_FILE = "s3-identities.json"


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``cloudfree services status``."""

    name: str
    running: bool
    pid: int | None
    url: str
    detail: str = ""

    def __str__(self) -> str:
        state = "running" if self.running else "stopped"
        pid = str(self.pid) if self.pid else "-"
        line = f"{self.name:<11} {state:<8} pid {pid:<8} {self.url}"
        return f"{line}  ({self.detail})" if self.detail else line


@dataclass(frozen=True)
class _Service:
    name: str
    ports: tuple[tuple[int, str], ...]  # (port, the setting's env var), the first is the public one
    marker: str  # a substring of the process's command line, to tell our process from a reused pid
    url: str


def seaweed_ports(settings: Settings) -> dict[str, int]:
    """SeaweedFS's internal ports, all derived from ``settings.seaweed_port_base``.

    ``weed mini``'s maintenance worker dials the admin gRPC port at admin port + 10000 whatever
    ``-admin.port.grpc`` says, so the admin gRPC port sits there.
    """
    base = settings.seaweed_port_base
    names = ["master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3.grpc"]
    ports = {name: base + i for i, name in enumerate(names)}
    ports["admin"] = base + 7
    ports["admin.grpc"] = base + 7 + 10000
    return ports


def _services(settings: Settings) -> list[_Service]:
    host = settings.host
    weed = tuple((p, "CLOUDFREE_SEAWEED_PORT_BASE") for p in seaweed_ports(settings).values())
    return [
        _Service(
            "postgres",
            ((settings.pg_port, "CLOUDFREE_PG_PORT"),),
            "postgres",
            f"postgresql://{host}:{settings.pg_port}/{PG_DATABASE}",
        ),
        _Service(
            "stac-api",
            ((settings.stac_port, "CLOUDFREE_STAC_PORT"),),
            "stac_fastapi.pgstac.app",
            f"http://{host}:{settings.stac_port}",
        ),
        _Service(
            "stac-writer",
            ((settings.stac_write_port, "CLOUDFREE_STAC_WRITE_PORT"),),
            "cloudfree.stac_writer",
            f"http://{host}:{settings.stac_write_port}",
        ),
        _Service(
            "s3",
            ((settings.s3_port, "CLOUDFREE_S3_PORT"), *weed),
            "weed",
            f"http://{host}:{settings.s3_port}",
        ),
        _Service(
            "prefect",
            ((settings.prefect_port, "CLOUDFREE_PREFECT_PORT"),),
            "prefect",
            f"http://{host}:{settings.prefect_port}/api",
        ),
    ]


# --- paths, processes and ports -----------------------------------------------------------


def _service_pid(settings: Settings, svc: _Service) -> int | None:
    pid = _read_pid(_pid_file(settings, svc.name))
    if pid is None and svc.name == "postgres":  # e.g. started by an `up` that crashed half-way
        pid = _read_pid(_root(settings) / "pg" / "postmaster.pid")
    return pid


# --- start-up -----------------------------------------------------------------------------


def _check_running(settings: Settings, svc: _Service, ready: Callable[[], bool], pid: int) -> None:
    """A service that was already running must answer within seconds; it is left alone."""
    deadline = time.monotonic() + RUNNING_GRACE_S
    while not ready():
        if time.monotonic() > deadline:
            raise ServiceError(
                svc.name,
                f"is running (pid {pid}) but does not answer at {svc.url}; read "
                f"{_log_file(settings, svc.name)}. If it was started with other settings "
                "(ports, credentials), restart it: 'cloudfree services down' then 'up'.",
            )
        time.sleep(0.2)


def _run_daemon(
    settings: Settings,
    svc: _Service,
    argv: list[str],
    env: dict[str, str],
    ready: Callable[[], bool],
    echo: Echo,
) -> None:
    start = time.monotonic()
    pid = _service_pid(settings, svc)
    if pid is not None and _is_ours(pid, svc.marker):
        _check_running(settings, svc, ready, pid)
        echo(f"{svc.name:<11} already running (pid {pid})  {svc.url}")
        return
    pid = _spawn(settings, svc.name, argv, env)
    _wait_ready(settings, svc.name, ready, pid)
    echo(f"{svc.name:<11} started in {time.monotonic() - start:4.1f}s (pid {pid})  {svc.url}")


def _s3_credentials(settings: Settings) -> tuple[str, str]:
    """The env's credentials if set, else those in the state dir (created on first use)."""
    path = _root(settings) / CREDENTIALS_FILE
    if not (settings.s3_access_key_id and settings.s3_secret_access_key) and not path.exists():
        creds = {
            "access_key_id": "CF" + secrets.token_hex(9).upper(),
            "secret_access_key": secrets.token_urlsafe(30),
        }
        _private_file(path, json.dumps(creds))
    return settings.s3_credentials()


def readonly_s3_credentials(settings: Settings) -> tuple[str, str]:
    """The read-only S3 identity of downstream readers (GET and LIST on the bucket, no PUT or
    DELETE): access key and secret, from ``state_dir/s3-readonly-credentials.json`` (mode
    0600), created on first use; SeaweedFS learns it at its next start."""
    path = _root(settings) / READONLY_CREDENTIALS_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        creds = {
            "access_key_id": "CFRO" + secrets.token_hex(8).upper(),
            "secret_access_key": secrets.token_urlsafe(30),
        }
        _private_file(path, json.dumps(creds))
    creds = json.loads(path.read_text())
    return str(creds["access_key_id"]), str(creds["secret_access_key"])


def _write_s3_config(settings: Settings) -> Path:
    """SeaweedFS's ``-s3.config``: the read-only identity, limited to the bucket. The
    read/write identity stays in weed's environment; weed merges the two."""
    key, secret = readonly_s3_credentials(settings)
    config = {
        "identities": [
            {
                "name": "cloudfree-readonly",
                "credentials": [{"accessKey": key, "secretKey": secret}],
                "actions": [f"Read:{settings.bucket}", f"List:{settings.bucket}"],
            }
        ]
    }
    path = _root(settings) / S3_CONFIG_FILE
    path.unlink(missing_ok=True)  # rewritten on every start: the bucket may have changed
    _private_file(path, json.dumps(config, indent=2))
    return path


def _s3_ready(settings: Settings, key: str, secret: str) -> Callable[[], bool]:
    import botocore.session
    from botocore.config import Config

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=f"http://{settings.host}:{settings.s3_port}",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}),
    )

    def ready() -> bool:  # the credentials work and the bucket exists
        try:
            client.head_bucket(Bucket=settings.bucket)
        except Exception:  # botocore raises many kinds while the server starts
            return False
        return True

    return ready


def _up_s3(settings: Settings, svc: _Service, echo: Echo) -> None:
    key, secret = _s3_credentials(settings)
    ports = seaweed_ports(settings)
    argv = [
        _bin("weed"),
        "mini",
        f"-dir={_root(settings) / 's3'}",
        f"-ip={settings.host}",
        f"-ip.bind={settings.host}",
        f"-s3.port={settings.s3_port}",
        *(f"-{name}.port={ports[name]}" for name in ("master", "volume", "filer", "admin")),
        *(f"-{name}.port.grpc={ports[name + '.grpc']}" for name in ("master", "volume", "filer")),
        f"-s3.port.grpc={ports['s3.grpc']}",
        f"-admin.port.grpc={ports['admin.grpc']}",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-volume.preStopSeconds=0",  # stop in 1 s instead of 2; nothing else depends on it
        f"-s3.config={_write_s3_config(settings)}",  # a path: no secret on the command line
    ]
    (_root(settings) / "s3").mkdir(exist_ok=True)
    # weed reads the credentials from its environment, never from the command line (ps shows it).
    env = _child_env(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, S3_BUCKET=settings.bucket)
    _run_daemon(settings, svc, argv, env, _s3_ready(settings, key, secret), echo)


def _up_prefect(settings: Settings, svc: _Service, echo: Echo) -> None:
    home = _root(settings) / "prefect"
    home.mkdir(exist_ok=True)
    argv = [
        _bin("prefect"), "server", "start", "--host", settings.host,
        "--port", str(settings.prefect_port), "--no-ui", "--analytics-off",
    ]  # fmt: skip
    env = _child_env(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=svc.url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="60",
    )
    _run_daemon(settings, svc, argv, env, lambda: _http_ok(f"{svc.url}/health"), echo)


def _up_stac(
    settings: Settings, svc: _Service, echo: Echo, *, app: str, port: int, **extra: str
) -> None:
    """A stac-fastapi-pgstac process on the local pgstac: uvicorn serving ``app``."""
    password = (_root(settings) / PASSWORD_FILE).read_text().strip()
    argv = [
        sys.executable, "-m", "uvicorn", app, "--factory", "--host", settings.host,
        "--port", str(port),
    ]  # fmt: skip
    # Names read by stac_fastapi.pgstac.config (PostgresSettings and Settings).
    env = _child_env(
        PGUSER=API_ROLE,
        PGPASSWORD=password,
        PGHOST=settings.host,
        PGPORT=str(settings.pg_port),
        PGDATABASE=PG_DATABASE,
        STAC_FASTAPI_LANDING_ID="cloudfree",
        **extra,
    )
    _run_daemon(settings, svc, argv, env, lambda: _http_ok(f"{svc.url}/_mgmt/health"), echo)


def _up_stac_api(settings: Settings, svc: _Service, echo: Echo) -> None:
    """The readers' API: no Transactions, so it refuses every write (405); the publisher
    writes through the writer API (:func:`_up_stac_writer`)."""
    pid = _service_pid(settings, svc)
    if pid is not None and _is_ours(pid, svc.marker) and _offers_transactions(svc.url):
        raise ServiceError(
            svc.name,
            f"is running (pid {pid}) with Transactions on, as an older cloudfree started it, so "
            "anyone could write to it; restart the stack: 'cloudfree services down' then 'up'",
        )
    _up_stac(
        settings, svc, echo, app="stac_fastapi.pgstac.app:create_app", port=settings.stac_port,
        ENABLE_TRANSACTIONS_EXTENSIONS="false",
        STAC_FASTAPI_TITLE="cloudfree local STAC API",
        STAC_FASTAPI_DESCRIPTION="Sentinel-2 scenes and cloud-free mosaics",
    )  # fmt: skip


def _offers_transactions(url: str) -> bool:
    try:
        landing = httpx.get(url, timeout=5.0, trust_env=False).json()
    except (httpx.HTTPError, ValueError):
        return False  # not answering: _check_running says so
    return any("transaction" in c for c in landing.get("conformsTo", []))


def _stac_token(settings: Settings) -> str:
    """The env's writer token if set, else the one in the state dir (created on first use)."""
    if settings.stac_write_token is not None and settings.stac_write_token.get_secret_value():
        return settings.stac_write_token.get_secret_value()
    return _secret_from_file(_root(settings) / STAC_TOKEN_FILE, lambda: secrets.token_urlsafe(32))


def _up_stac_writer(settings: Settings, svc: _Service, echo: Echo) -> None:
    """The publisher's API on the same pgstac: Transactions behind a bearer token
    (cloudfree.stac_writer); the token reaches it by environment, never on its command line."""
    _up_stac(
        settings, svc, echo, app="cloudfree.stac_writer:create_app",
        port=settings.stac_write_port,
        STAC_WRITE_TOKEN=_stac_token(settings),
        ENABLE_TRANSACTIONS_EXTENSIONS="true",  # also enables bulk transactions in 7.x
        STAC_FASTAPI_TITLE="cloudfree local STAC API (writer)",
        STAC_FASTAPI_DESCRIPTION="Sentinel-2 scenes and cloud-free mosaics: the publisher's API",
    )  # fmt: skip


# --- PostgreSQL ---------------------------------------------------------------------------


def _up_postgres_chain(settings: Settings, services: dict[str, _Service], echo: Echo) -> None:
    svc = services["postgres"]
    start = time.monotonic()
    pid = _service_pid(settings, svc)
    if _is_ours(pid, svc.marker):
        echo(f"{svc.name:<11} already running (pid {pid})  {svc.url}")
    else:
        _start_postgres(settings)
        pid = _service_pid(settings, svc)
        echo(f"{svc.name:<11} started in {time.monotonic() - start:4.1f}s (pid {pid})  {svc.url}")
    import psycopg

    try:
        _bootstrap_database(settings, echo)
    except psycopg.Error as exc:  # the server answers but not as expected
        raise ServiceError(
            "postgres",
            f"cannot set up database {PG_DATABASE!r} ({exc}); read "
            f"{_log_file(settings, 'postgres')}",
        ) from exc
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="cloudfree-stac") as pool:
        futures = [
            pool.submit(_up_stac_api, settings, services["stac-api"], echo),
            pool.submit(_up_stac_writer, settings, services["stac-writer"], echo),
        ]
    failed = [err for f in futures if (err := f.exception()) is not None]
    if failed:
        raise failed[0]


def _preflight(settings: Settings, services: list[_Service], echo: Echo) -> None:
    """Clean stale pid files and refuse ports that another process holds, before starting anything."""
    seen: dict[int, str] = {}
    for svc in services:
        for port, env_var in svc.ports:
            if port in seen:
                raise ServiceError(
                    svc.name, f"port {port} is also used by {seen[port]}; change {env_var}"
                )
            seen[port] = svc.name
    for svc in services:
        pid_file = _pid_file(settings, svc.name)
        pid = _read_pid(pid_file)
        if pid is not None and not _is_ours(pid, svc.marker):
            _reap(pid)
            pid_file.unlink(missing_ok=True)
            echo(f"{svc.name:<11} removed stale pid file {pid_file} (process {pid} is gone)")
        if _is_ours(_service_pid(settings, svc), svc.marker):
            continue
        for port, env_var in svc.ports:
            if _port_in_use(settings.host, port):
                raise ServiceError(
                    svc.name,
                    f"port {port} on {settings.host} is already in use by another process. "
                    f"Find it with `ss -ltnp 'sport = :{port}'` (or `lsof -iTCP:{port} "
                    f"-sTCP:LISTEN`) and stop it, or pick another port with {env_var}=<port>.",
                )
    postgres = next(svc for svc in services if svc.name == "postgres")
    if not _is_ours(_service_pid(settings, postgres), postgres.marker):
        _prepare_pg_dirs(settings)  # fails early when the postgres user cannot reach them


def up(settings: Settings, *, echo: Echo = print) -> None:
    """Start every service that is not running yet and wait until each answers.

    Postgres, the pgstac migration and the STAC API form a chain; S3 and Prefect start
    alongside it. Running services are detected (pid, port and health) and left alone.
    """
    if len(settings.bucket) < 3:
        raise ServiceError(
            "s3",
            f"bucket name {settings.bucket!r} is shorter than 3 characters; change CLOUDFREE_BUCKET",
        )
    root = _root(settings)
    start = time.monotonic()
    with _locked(settings):
        for sub in ("logs", "run"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        services = {svc.name: svc for svc in _services(settings)}
        _preflight(settings, list(services.values()), echo)
        lock = threading.Lock()

        def say(line: str) -> None:
            with lock:
                echo(line)

        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="cloudfree-up") as pool:
            futures = [
                pool.submit(_up_prefect, settings, services["prefect"], say),  # the slowest first
                pool.submit(_up_s3, settings, services["s3"], say),
                pool.submit(_up_postgres_chain, settings, services, say),
            ]
        errors = [exc for f in futures if (exc := f.exception()) is not None]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ServiceError("stack", "; ".join(str(e) for e in errors))
    echo(f"{'stack':<11} up in {time.monotonic() - start:4.1f}s; state in {root}")


# --- shut-down and status -----------------------------------------------------------------


def down(settings: Settings, *, echo: Echo = print) -> None:
    """Stop every service of this state directory; leaves no process behind."""
    if not _root(settings).exists():
        echo(f"{'stack':<11} nothing to stop: {_root(settings)} does not exist")
        return
    with _locked(settings):
        threads = []
        lock = threading.Lock()
        for svc in _services(settings):
            pid_file = _pid_file(settings, svc.name)
            pid = _service_pid(settings, svc)
            if not _is_ours(pid, svc.marker):
                if pid_file.exists():
                    pid_file.unlink()
                    echo(f"{svc.name:<11} removed stale pid file {pid_file} (process {pid} is gone)")
                else:
                    echo(f"{svc.name:<11} not running")
                continue
            assert pid is not None

            def stop(svc: _Service = svc, pid: int = pid, pid_file: Path = pid_file) -> None:
                start = time.monotonic()
                if svc.name == "postgres":
                    _stop_postgres(settings, pid)
                else:
                    _terminate([pid])
                pid_file.unlink(missing_ok=True)
                with lock:
                    echo(f"{svc.name:<11} stopped in {time.monotonic() - start:4.1f}s (pid {pid})")

            threads.append(threading.Thread(target=stop, name=f"cloudfree-down-{svc.name}"))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def status(settings: Settings) -> list[ServiceStatus]:
    """One row per service: running means our process is alive and holds its port."""
    rows = []
    for svc in _services(settings):
        pid = _service_pid(settings, svc)
        port = svc.ports[0][0]
        detail = ""
        if _is_ours(pid, svc.marker):
            running = _port_in_use(settings.host, port)
            if not running:
                detail = f"process alive but port {port} is not listening"
        else:
            running = False
            if pid is not None:
                detail = f"stale pid file, process {pid} is gone"
                pid = None
            elif _port_in_use(settings.host, port):
                detail = f"port {port} is held by another process"
        rows.append(ServiceStatus(svc.name, running, pid, svc.url, detail))
    return rows
