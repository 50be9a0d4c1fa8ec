"""The local stack on 127.0.0.1: PostgreSQL/PostGIS/pgstac, stac-fastapi-pgstac, SeaweedFS S3, Prefect.

Everything lives under ``settings.state_dir``: data in ``pg/``, ``s3/`` and ``prefect/``, logs in
``logs/``, pid files in ``run/``. Several instances can run side by side when their state
directories and ports differ.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from cloudfree.errors import ServiceError
from cloudfree.settings import CREDENTIALS_FILE, Settings

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_SUPERUSER = "postgres"  # trusted on the unix socket only, which only its owner can reach
PG_DATABASE = "pgstac"
API_ROLE = "cloudfree_api"  # password-authenticated role the STAC API connects as
PASSWORD_FILE = "pg-api-password"

# Seconds to wait for each service to answer; Prefect migrates its SQLite database on first start.
START_TIMEOUT_S = {"postgres": 60.0, "stac-api": 60.0, "s3": 60.0, "prefect": 180.0}
STOP_TIMEOUT_S = 15.0
RUNNING_GRACE_S = 10.0  # how long an already running service may take to answer

Echo = Callable[[str], None]

# Processes this interpreter started; kept so they can be reaped (no zombies, no ResourceWarning).
_children: dict[int, subprocess.Popen] = {}


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
        line = f"{self.name:<9} {state:<8} pid {pid:<8} {self.url}"
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


def _root(settings: Settings) -> Path:
    return settings.state_dir.expanduser().resolve()


def _pid_file(settings: Settings, name: str) -> Path:
    return _root(settings) / "run" / f"{name}.pid"


def _log_file(settings: Settings, name: str) -> Path:
    return _root(settings) / "logs" / f"{name}.log"


def _pg_socket_dir(settings: Settings) -> Path:
    return _root(settings) / "run" / "pg"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no procfs
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _is_ours(pid: int | None, marker: str) -> bool:
    if not pid or not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return True
    return marker in cmdline


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR ignores TIME_WAIT leftovers of a service we just stopped.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _reap(pid: int) -> None:
    proc = _children.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.1)
            return
        _children[pid] = proc


def _service_pid(settings: Settings, svc: _Service) -> int | None:
    pid = _read_pid(_pid_file(settings, svc.name))
    if pid is None and svc.name == "postgres":  # e.g. started by an `up` that crashed half-way
        pid = _read_pid(_root(settings) / "pg" / "postmaster.pid")
    return pid


def _bin(name: str) -> str:
    """An executable from this interpreter's environment (the venv), else from PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise ServiceError(name, f"the {name!r} program is missing; run 'make setup'")
    return found


def _child_env(**extra: str) -> dict[str, str]:
    """The environment minus credentials the child does not need, plus ``extra``."""
    drop = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD", "PREFECT_API_URL")
    env = {
        k: v for k, v in os.environ.items() if k not in drop and not k.startswith("CLOUDFREE_S3_")
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """Serialise `up` and `down` on one state directory."""
    run = _root(settings) / "run"
    run.mkdir(parents=True, exist_ok=True)
    with open(run / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _private_file(path: Path, text: str) -> None:
    """Write ``text`` to a new file that only its owner can read (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _secret_from_file(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        _private_file(path, make())
    return path.read_text().strip()


# --- start-up -----------------------------------------------------------------------------


def _spawn(settings: Settings, name: str, argv: list[str], env: dict[str, str]) -> int:
    log = _log_file(settings, name)
    with open(log, "ab") as fh:
        fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=_root(settings),
            start_new_session=True,  # survives the terminal and the `cloudfree` process
        )
    _children[proc.pid] = proc
    _pid_file(settings, name).write_text(f"{proc.pid}\n")
    return proc.pid


def _wait_ready(settings: Settings, name: str, ready: Callable[[], bool], pid: int) -> None:
    """Wait for a process this call started; stop it again when it does not come up."""
    timeout = START_TIMEOUT_S[name]
    deadline = time.monotonic() + timeout
    log = _log_file(settings, name)
    while not ready():
        if not _alive(pid):
            _reap(pid)
            _pid_file(settings, name).unlink(missing_ok=True)
            raise ServiceError(name, f"exited during start-up; read {log}")
        if time.monotonic() > deadline:
            _terminate([pid])
            _pid_file(settings, name).unlink(missing_ok=True)
            raise ServiceError(name, f"not ready after {timeout:.0f}s; read {log}")
        time.sleep(0.1)


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


def _http_ok(url: str) -> bool:
    try:
        # trust_env=False: a proxy from the environment must not see local traffic.
        return httpx.get(url, timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


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
        echo(f"{svc.name:<9} already running (pid {pid})  {svc.url}")
        return
    pid = _spawn(settings, svc.name, argv, env)
    _wait_ready(settings, svc.name, ready, pid)
    echo(f"{svc.name:<9} started in {time.monotonic() - start:4.1f}s (pid {pid})  {svc.url}")


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


def _up_stac_api(settings: Settings, svc: _Service, echo: Echo) -> None:
    password = (_root(settings) / PASSWORD_FILE).read_text().strip()
    argv = [
        sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory",
        "--host", settings.host, "--port", str(settings.stac_port),
    ]  # fmt: skip
    # Names read by stac_fastapi.pgstac.config (PostgresSettings and Settings).
    env = _child_env(
        PGUSER=API_ROLE,
        PGPASSWORD=password,
        PGHOST=settings.host,
        PGPORT=str(settings.pg_port),
        PGDATABASE=PG_DATABASE,
        ENABLE_TRANSACTIONS_EXTENSIONS="true",  # also enables bulk transactions in 7.x
        STAC_FASTAPI_TITLE="cloudfree local STAC API",
        STAC_FASTAPI_DESCRIPTION="Sentinel-2 scenes and cloud-free mosaics",
        STAC_FASTAPI_LANDING_ID="cloudfree",
    )
    _run_daemon(settings, svc, argv, env, lambda: _http_ok(f"{svc.url}/_mgmt/health"), echo)


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_argv(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its programs as the postgres user."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _pg_chown(*paths: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError(
            "postgres",
            "PostgreSQL cannot run as root and there is no 'postgres' user; install "
            "postgresql-15 (scripts/setup.sh does) or run cloudfree as a normal user",
        ) from None
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)


def _prepare_pg_dirs(settings: Settings) -> tuple[Path, Path, Path]:
    data, sock, log = (
        _root(settings) / "pg",
        _pg_socket_dir(settings),
        _log_file(settings, "postgres"),
    )
    if len(f"{sock}/.s.PGSQL.{settings.pg_port}") > 107:
        raise ServiceError(
            "postgres",
            f"the socket path under {sock} is too long for a unix socket; "
            "set CLOUDFREE_STATE_DIR to a shorter path",
        )
    for path in (data, sock):
        path.mkdir(mode=0o700, exist_ok=True)
    log.touch(mode=0o600, exist_ok=True)
    _pg_chown(data, sock, log)
    if os.geteuid() == 0:
        reachable = subprocess.run(
            _pg_argv(["test", "-w", str(data), "-a", "-w", str(sock), "-a", "-w", str(log)]),
            check=False,
        )
        if reachable.returncode != 0:
            raise ServiceError(
                "postgres",
                f"the postgres user cannot reach {data}: PostgreSQL refuses to run as root, so it "
                f"runs as 'postgres', and a parent directory of {_root(settings)} is not "
                "traversable for it (needs o+x). Set CLOUDFREE_STATE_DIR to a directory under a "
                "world-traversable path, or run as a normal user.",
            )
    return data, sock, log


def _start_postgres(settings: Settings) -> None:
    data, sock, log = _prepare_pg_dirs(settings)  # checked by _preflight already; cheap
    if not (data / "PG_VERSION").exists():
        with open(_log_file(settings, "initdb"), "ab") as fh:
            initdb = subprocess.run(
                _pg_argv([
                    str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_SUPERUSER, "-E", "UTF8",
                    "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256",
                    "--no-sync", "--no-instructions",
                ]),
                stdout=fh, stderr=subprocess.STDOUT, cwd=_root(settings), check=False,
            )  # fmt: skip
        if initdb.returncode != 0:
            raise ServiceError("postgres", f"initdb failed; read {_log_file(settings, 'initdb')}")
        with open(data / "postgresql.conf", "a") as fh:
            fh.write("\ninclude_if_exists = 'cloudfree.conf'\n")
    conf = data / "cloudfree.conf"
    quoted_sock = str(sock).replace("'", "''")
    conf.write_text(
        "# Written by cloudfree services on every start.\n"
        f"port = {settings.pg_port}\n"
        f"listen_addresses = '{settings.host}'\n"
        f"unix_socket_directories = '{quoted_sock}'\n"
        "unix_socket_permissions = 0700\n"  # with trust on the socket, only its owner may connect
    )
    _pg_chown(conf)
    timeout = int(START_TIMEOUT_S["postgres"])
    ctl = subprocess.run(
        _pg_argv([str(PG_BIN / "pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w", "-t", str(timeout)]),
        capture_output=True, text=True, cwd=_root(settings), start_new_session=True, check=False,
    )  # fmt: skip
    if ctl.returncode != 0:
        raise ServiceError(
            "postgres", f"pg_ctl start failed ({ctl.stdout.strip()[-300:]}); read {log}"
        )
    pid = _read_pid(data / "postmaster.pid")
    _pid_file(settings, "postgres").write_text(f"{pid}\n")


def _superuser_dsn(settings: Settings, dbname: str) -> str:
    host = quote(str(_pg_socket_dir(settings)), safe="")
    return f"postgresql://{PG_SUPERUSER}@/{dbname}?host={host}&port={settings.pg_port}"


def _bootstrap_database(settings: Settings, echo: Echo) -> None:
    """Create the database, migrate pgstac and create the API role; quick when all is there."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(_superuser_dsn(settings, "postgres"), autocommit=True) as conn:
        if not conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [PG_DATABASE]
        ).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PG_DATABASE)))

    wanted = importlib.metadata.version("pypgstac")
    with psycopg.connect(_superuser_dsn(settings, PG_DATABASE), autocommit=True) as conn:
        row = conn.execute("SELECT to_regprocedure('pgstac.get_version()') IS NOT NULL").fetchone()
        current = (
            conn.execute("SELECT pgstac.get_version()").fetchone()[0] if row and row[0] else None
        )
    if current != wanted:
        start = time.monotonic()
        log = _log_file(settings, "migrate")
        with open(log, "ab") as fh:
            migrate = subprocess.run(
                [_bin("pypgstac"), "migrate", "--dsn", _superuser_dsn(settings, PG_DATABASE)],
                stdout=fh, stderr=subprocess.STDOUT, env=_child_env(), check=False, timeout=600,
            )  # fmt: skip
        if migrate.returncode != 0:
            raise ServiceError("postgres", f"pypgstac migrate failed; read {log}")
        echo(
            f"{'pgstac':<9} migrated {current or 'empty'} -> {wanted} in {time.monotonic() - start:4.1f}s"
        )

    password = _secret_from_file(_root(settings) / PASSWORD_FILE, lambda: secrets.token_urlsafe(24))
    with psycopg.connect(_superuser_dsn(settings, PG_DATABASE), autocommit=True) as conn:
        conn.execute("SET log_min_error_statement = panic")  # keep the password out of the log
        role = sql.Identifier(API_ROLE)
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [API_ROLE]).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(password))
        )
        # pgstac_ingest reads and writes collections and items, which Transactions needs.
        conn.execute(sql.SQL("GRANT pgstac_ingest TO {}").format(role))


def _up_postgres_chain(settings: Settings, services: dict[str, _Service], echo: Echo) -> None:
    svc = services["postgres"]
    start = time.monotonic()
    pid = _service_pid(settings, svc)
    if _is_ours(pid, svc.marker):
        echo(f"{svc.name:<9} already running (pid {pid})  {svc.url}")
    else:
        _start_postgres(settings)
        pid = _service_pid(settings, svc)
        echo(f"{svc.name:<9} started in {time.monotonic() - start:4.1f}s (pid {pid})  {svc.url}")
    import psycopg

    try:
        _bootstrap_database(settings, echo)
    except psycopg.Error as exc:  # the server answers but not as expected
        raise ServiceError(
            "postgres",
            f"cannot set up database {PG_DATABASE!r} ({exc}); read "
            f"{_log_file(settings, 'postgres')}",
        ) from exc
    _up_stac_api(settings, services["stac-api"], echo)


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
            echo(f"{svc.name:<9} removed stale pid file {pid_file} (process {pid} is gone)")
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
    echo(f"{'stack':<9} up in {time.monotonic() - start:4.1f}s; state in {root}")


# --- shut-down and status -----------------------------------------------------------------


def _signal(pid: int, sig: int) -> None:
    """Signal the process group a daemon leads (its children too), else the process alone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:  # e.g. a postmaster, whose group is led by the runuser that started it
            os.kill(pid, sig)


def _terminate(pids: list[int], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM each process, wait, then SIGKILL what is left."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while True:
        for pid in pids:
            _reap(pid)
        left = [pid for pid in pids if _alive(pid)]
        if not left:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for pid in left:
        _signal(pid, signal.SIGKILL)
        _reap(pid)


def _stop_postgres(settings: Settings, pid: int) -> None:
    data = _root(settings) / "pg"
    ctl = subprocess.run(
        _pg_argv([str(PG_BIN / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT_S))]),
        capture_output=True, text=True, cwd=_root(settings), check=False,
    )  # fmt: skip
    if ctl.returncode != 0 and _alive(pid):
        _terminate([pid])


def down(settings: Settings, *, echo: Echo = print) -> None:
    """Stop every service of this state directory; leaves no process behind."""
    if not _root(settings).exists():
        echo(f"{'stack':<9} nothing to stop: {_root(settings)} does not exist")
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
                    echo(f"{svc.name:<9} removed stale pid file {pid_file} (process {pid} is gone)")
                else:
                    echo(f"{svc.name:<9} not running")
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
                    echo(f"{svc.name:<9} stopped in {time.monotonic() - start:4.1f}s (pid {pid})")

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
