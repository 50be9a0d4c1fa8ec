"""Processes of the local stack: state paths, pid files, spawning, readiness and stopping.

Shared by :mod:`cloudfree.localstack._stack` and :mod:`cloudfree.localstack._postgres`;
nothing here knows a particular service.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from cloudfree.errors import ServiceError
from cloudfree.settings import Settings

# Seconds to wait for each service to answer; Prefect migrates its SQLite database on first start.
START_TIMEOUT_S = {
    "postgres": 60.0, "stac-api": 60.0, "stac-writer": 60.0, "s3": 60.0, "prefect": 180.0,
}
STOP_TIMEOUT_S = 15.0
Echo = Callable[[str], None]
# Processes this interpreter started; kept so they can be reaped (no zombies, no ResourceWarning).
_children: dict[int, subprocess.Popen[bytes]] = {}


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
    drop = (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD", "PREFECT_API_URL",
        "STAC_WRITE_TOKEN", "CLOUDFREE_STAC_WRITE_TOKEN",
    )  # fmt: skip
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


def _http_ok(url: str) -> bool:
    try:
        # trust_env=False: a proxy from the environment must not see local traffic.
        return httpx.get(url, timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


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
