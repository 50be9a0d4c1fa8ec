"""Shared fixtures, and the suite's kinds.

``stack`` starts a real local stack (its own state dir and ports) per session.

Every test is of one kind, by its directory, and gets that kind's marker here
(``pytest -m unit``, ``-m integration``, ``-m deploy``):

``tests/unit/``
    the library alone: no services, nothing listening.
``tests/integration/``
    the real local services: the session ``stack`` (directly or through ``demo_scenes``
    and the modules' fixtures built on it) or a Prefect server.
``tests/deploy/``
    what is deployed: the Helm chart, the Kustomize tree, the Dockerfile, the Prefect
    deployments (rendered offline) and checkov over all of them.

Collection fails for a test outside those directories, and for a test outside
``tests/integration/`` that needs the stack, so the split cannot rot.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloudfree.settings import Settings

TESTS = Path(__file__).resolve().parent
#: The kinds of test: a directory of ``tests/`` and the marker its tests get.
KINDS = ("unit", "integration", "deploy")
#: Fixtures that start real services: only integration tests may use them.
SERVICE_FIXTURES = ("stack",)


def _kind(item: pytest.Item) -> str | None:
    try:
        parts = Path(item.path).resolve().relative_to(TESTS).parts
    except ValueError:  # a test file given from outside tests/
        return None
    return parts[0] if len(parts) > 1 and parts[0] in KINDS else None


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its directory's kind; refuse tests that are of no kind, and
    tests outside ``tests/integration/`` that need the local stack (of every collected
    test, before any is deselected)."""
    problems = []
    for item in items:
        kind = _kind(item)
        if kind is None:
            problems.append(f"{item.nodeid}: not in tests/unit/, tests/integration/ or "
                            "tests/deploy/; put it in the directory of its kind")
            continue
        item.add_marker(getattr(pytest.mark, kind))
        needs = [name for name in SERVICE_FIXTURES if name in item.fixturenames]
        if needs and kind != "integration":
            problems.append(
                f"{item.nodeid}: a {kind} test that needs the local stack (fixture "
                f"{', '.join(repr(n) for n in needs)}, directly or through another fixture); "
                "a test that needs real services is an integration test: move it to "
                "tests/integration/")
    if problems:
        raise pytest.UsageError("tests of the wrong kind:\n  " + "\n  ".join(problems))


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_settings(state_dir: Path, **overrides: object) -> Settings:
    """Settings on a block of free ports, away from the defaults and from other test sessions.

    SeaweedFS takes ``base .. base+7`` and ``base+10007``; the others take ``base+8 .. base+12``.
    """
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 29900)
        ports = [*range(base, base + 13), base + 10007]
        if all(_port_free(p) for p in ports):
            values: dict[str, object] = {
                "state_dir": state_dir,
                "seaweed_port_base": base,
                "pg_port": base + 8,
                "stac_port": base + 9,
                "s3_port": base + 10,
                "prefect_port": base + 11,
                "stac_write_port": base + 12,
                # A test session never uses the developer's own S3 keys or Prefect server.
                "CLOUDFREE_S3_ACCESS_KEY_ID": None,  # by alias: the field names are ignored
                "CLOUDFREE_S3_SECRET_ACCESS_KEY": None,
                "CLOUDFREE_STAC_WRITE_TOKEN": None,  # the stack's own, from its state dir
                "prefect_api_url": None,
                "stac_api_url": None,
                "stac_write_url": None,
                "s3_endpoint_url": None,
            }
            values.update(overrides)
            return Settings(**values)
    raise RuntimeError("no block of 13 free ports found between 20000 and 40007")


@pytest.fixture(name="free_port_settings")
def free_port_settings_fixture() -> Callable[..., Settings]:
    """``free_port_settings(state_dir, **overrides)`` for tests that need their own instance."""
    return free_port_settings


def _drain_prefect_logs() -> None:
    """Send Prefect's queued flow-run logs while its server still runs, instead of at
    interpreter exit, when they would fail with a connection error."""
    import sys

    if "prefect.logging.handlers" in sys.modules:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running local stack (Postgres/pgstac, the readers' and the writer's STAC API, S3,
    Prefect) for the whole session. Write to ``stack.stac_publish_url`` with
    ``token=stack.stac_token()``; ``stack.stac_url`` is read-only."""
    cleanup: Path | None = None
    if os.geteuid() == 0:
        # As root, Postgres runs as the 'postgres' user, which cannot enter pytest's 0700 basetemp.
        state_dir = cleanup = Path(tempfile.mkdtemp(prefix="cloudfree-stack-"))
        state_dir.chmod(0o755)
    else:
        state_dir = tmp_path_factory.mktemp("stack")
    from cloudfree import localstack as services

    settings = free_port_settings(state_dir)
    previous_api_url = os.environ.get("PREFECT_API_URL")
    try:
        services.up(settings)
        os.environ["PREFECT_API_URL"] = settings.prefect_url
        # Prefect reads its settings once, when first imported: a test that imported it
        # before the stack was up (a unit or deploy test, in the same session) would leave
        # the flows on a temporary server of their own. The stack's server, for the session:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: settings.prefect_url}):
            try:
                yield settings
            finally:
                _drain_prefect_logs()
    finally:
        services.down(settings)
        if previous_api_url is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous_api_url
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_scenes(stack: Settings) -> list[dict]:
    """The demo catalog in the session stack (2 tiles of 128 px, 8 dates, seed 1), as the
    items a search of the source collection returns. One catalog for every module: a
    second build with the same parameters writes nothing."""
    from pystac_client import Client

    from cloudfree.demo import build_demo_catalog

    build_demo_catalog(
        stac_api_url=stack.stac_publish_url, stac_token=stack.stac_token(),
        storage_options=stack.storage_options(), bucket=stack.bucket,
        collection_id=stack.source_collection, n_tiles=2, n_dates=8, size_px=128, seed=1,
    )
    return list(Client.open(stack.stac_url).search(
        collections=[stack.source_collection], max_items=1000).items_as_dicts())
