"""PostgreSQL for the local stack: a cluster under the state dir, PostGIS and pgstac, and the
password-authenticated role the STAC API connects as.
"""

from __future__ import annotations

import importlib.metadata
import os
import pwd
import secrets
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from cloudfree.errors import ServiceError
from cloudfree.localstack._processes import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Echo,
    _alive,
    _bin,
    _child_env,
    _log_file,
    _pg_socket_dir,
    _pid_file,
    _read_pid,
    _root,
    _secret_from_file,
    _terminate,
)
from cloudfree.settings import Settings

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_SUPERUSER = "postgres"  # trusted on the unix socket only, which only its owner can reach
PG_DATABASE = "pgstac"
API_ROLE = "cloudfree_api"  # password-authenticated role the STAC API connects as
PASSWORD_FILE = "pg-api-password"


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
        version = conn.execute("SELECT pgstac.get_version()").fetchone() if row and row[0] else None
        current = version[0] if version else None
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
            f"{'pgstac':<11} migrated {current or 'empty'} -> {wanted} in {time.monotonic() - start:4.1f}s"
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


def _stop_postgres(settings: Settings, pid: int) -> None:
    data = _root(settings) / "pg"
    ctl = subprocess.run(
        _pg_argv([str(PG_BIN / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT_S))]),
        capture_output=True, text=True, cwd=_root(settings), check=False,
    )  # fmt: skip
    if ctl.returncode != 0 and _alive(pid):
        _terminate([pid])
