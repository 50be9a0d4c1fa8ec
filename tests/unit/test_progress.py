"""Progress: reports reach the listeners in order, from this process and from a Dask
worker's task (and the threads of a local scheduler inside it); the display draws on a
terminal only."""

import logging
import os
import select
import threading
import time

import dask
import dask.array as da
import numpy as np
import pytest

from cloudfree import progress


def drain(fd: int, wait_s: float = 0.2) -> bytes:
    """Everything readable on ``fd`` now (waiting up to ``wait_s`` for the first byte)."""
    out = b""
    while select.select([fd], [], [], wait_s)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # a pty whose other end closed
            break
        if not chunk:  # end of file
            break
        out += chunk
        wait_s = 0.05
    return out


def test_local_reports_reach_a_listener_in_order():
    heard: list[dict] = []
    assert not progress.active()
    with progress.listening(heard.append):
        assert progress.active()
        for i in range(5):
            progress.report("t1", "generator", i, 4, unit="chunks")
        counter = progress.steps("t1", "write", 2, unit="files")
        counter.advance()
        counter.advance()
    progress.report("t1", "after", 0, 1)  # nobody listens any more
    assert [e["done"] for e in heard] == [0, 1, 2, 3, 4, 0, 1, 2]
    assert heard[0] == {"tile": "t1", "stage": "generator", "done": 0, "total": 4,
                        "unit": "chunks"}
    assert [e["stage"] for e in heard[-3:]] == ["write"] * 3
    assert not progress.active()


def test_dask_tasks_counts_a_threaded_compute():
    heard: list[dict] = []
    array = da.ones((64, 64), chunks=8) + 1
    with progress.listening(heard.append), \
            progress.dask_tasks("t2", interval=0.0) as callbacks:
        total = array.sum().compute(scheduler="threads", callbacks=callbacks)
    assert total == 2 * 64 * 64
    compute = [e for e in heard if e["stage"] == "compute"]
    assert compute[0]["done"] == 0 and compute[0]["total"] > 64
    assert compute[-1]["done"] == compute[-1]["total"] == compute[0]["total"]
    done = [e["done"] for e in compute]
    assert done == sorted(done)  # in order, as the tasks finished


def test_dask_tasks_names_the_long_stage_while_it_runs():
    """A network chunk running is what the report names (``generator k/n chunks``), not the
    short tasks finishing around it."""
    heard: list[dict] = []
    network = da.ones((32, 32), chunks=16).map_blocks(
        lambda b: b * 2, name="generator-block-test", meta=np.empty((0, 0)))
    with dask.config.set({"optimization.fuse.active": False}), \
            progress.listening(heard.append), \
            progress.dask_tasks("t4", interval=60.0) as callbacks:
        network.compute(scheduler="sync", callbacks=callbacks)
    generator = [e for e in heard if e["stage"] == "generator"]
    assert generator and all(e["total"] == 4 and e["unit"] == "chunks" for e in generator)
    assert [e["done"] for e in generator] == sorted(e["done"] for e in generator)
    # a long interval: only changes of stage and the start and end are reported
    assert len(heard) <= 2 + 2 * 4
    assert heard[-1] == {"tile": "t4", "stage": "compute", "done": heard[-1]["total"],
                         "total": heard[0]["total"], "unit": "tasks"}


def test_tiles_computing_at_once_count_their_own_tasks():
    """Dask's callbacks are process-wide; two tiles computing in two threads of one worker
    each count their own graph."""
    heard: list[dict] = []
    arrays = {"small": da.ones((16, 16), chunks=8) + 1, "large": da.ones((64, 64), chunks=8) + 1}
    barrier = threading.Barrier(2)

    def tile(name: str) -> None:
        with progress.dask_tasks(name, interval=0.0) as callbacks:
            barrier.wait()
            arrays[name].sum().compute(scheduler="threads", callbacks=callbacks)

    with progress.listening(heard.append):
        threads = [threading.Thread(target=tile, args=(name,)) for name in arrays]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    totals = {name: {e["total"] for e in heard if e["tile"] == name} for name in arrays}
    assert len(totals["small"]) == len(totals["large"]) == 1
    assert totals["small"] != totals["large"]
    for name in arrays:
        done = [e["done"] for e in heard if e["tile"] == name]
        assert done == sorted(done) and done[-1] == next(iter(totals[name]))


@pytest.mark.filterwarnings("ignore::cloudfree.errors.CloudFreeWarning")
def test_compute_tile_reports_its_steps(tmp_path):
    from cloudfree.testing import make_items, make_tile
    from cloudfree.tile import MosaicParams, compute_tile

    tile = make_tile(size=32)
    rng = np.random.default_rng(0)
    bands = ("blue", "green", "red", "nir", "swir16", "swir22")
    arrays = {b: rng.integers(1000, 4000, (3, 32, 32), dtype=np.uint16) for b in bands}
    items = make_items(tmp_path, arrays | {"scl": np.full((3, 32, 32), 4, np.uint16)},
                       tile=tile)
    heard: list[dict] = []
    with progress.listening(heard.append):
        compute_tile(items, tile, MosaicParams(dilation_m=0, chunksize=16))
    assert heard[0]["tile"] == tile.tile_id and heard[0]["stage"] == "compute"
    assert heard[0]["done"] == 0 and heard[0]["total"] > 0
    assert heard[-1] == {**heard[0], "done": heard[0]["total"]}


def test_dask_tasks_costs_nothing_when_nobody_listens():
    from dask.callbacks import Callback

    with progress.dask_tasks("t3") as callbacks:
        assert callbacks == () and not Callback.active


def _tile_task(tile_id: str) -> str:
    """What a tile task does on a worker: reports, and a threaded compute inside whose
    pool threads report too (they are not the task's thread)."""
    progress.report(tile_id, "plan", 1, 1)

    def chunk(block: np.ndarray) -> np.ndarray:
        assert threading.current_thread() is not threading.main_thread()
        progress.report(tile_id, "chunk", 1, 1)
        return block

    with progress.dask_tasks(tile_id, interval=0.0) as callbacks:
        blocks = da.ones((16, 16), chunks=8).map_blocks(chunk, meta=np.empty((0, 0)))
        blocks.sum().compute(scheduler="threads", callbacks=callbacks)
    return tile_id


def test_reports_on_a_dask_worker_reach_listen():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client, \
            progress.listen(client, 2, stream=open(os.devnull, "w")) as heard:
        seen: list[dict] = []
        original = heard.handle
        heard.handle = lambda event: (seen.append(event), original(event))  # type: ignore[method-assign]
        assert client.submit(_tile_task, "w1").result() == "w1"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                e["stage"] == "compute" and e["done"] == e["total"] for e in seen):
            time.sleep(0.05)
        stages = [e["stage"] for e in seen]
        assert stages[0] == "plan"
        assert stages.count("chunk") == 4  # from the local scheduler's threads
        assert "compute" in stages
        assert all(e["tile"] == "w1" for e in seen)
        assert "w1" in heard.running
        heard.tile_done({"tile_id": "w1", "status": "published"})
        assert heard.done == 1 and "w1" not in heard.running


def test_the_display_draws_on_a_terminal_only(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        with progress.listen(None, 3, stream=tty) as shown:
            progress.report("33TWM", "generator", 12, 40, unit="chunks")
            shown.tile_done("33TWL")
            text = drain(master).decode()
        assert "\r" in text
        assert "tiles 1/3 | 33TWM: generator 12/40 chunks" in text
        text += drain(master).decode()
        assert text.endswith("\n")  # the last line stays when done

        # a log line on the same terminal starts on a line of its own
        handler = logging.StreamHandler(tty)
        log = logging.getLogger("test-progress-display")
        log.addHandler(handler)
        try:
            with progress.listen(None, 1, stream=tty):
                progress.report("33TWM", "read", 1, 9, unit="chunks")
                log.warning("a log line")
                text = drain(master).decode()
        finally:
            log.removeHandler(handler)
        text += drain(master).decode()
        assert "read 1/9 chunks\x1b[K\r\x1b[Ka log line" in text
        assert handler.filters == []

        # CLOUDFREE_PROGRESS=0 (``--json``): not a byte
        monkeypatch.setenv(progress.ENV, "0")
        with progress.listen(None, 3, stream=tty) as shown:
            progress.report("33TWM", "generator", 13, 40, unit="chunks")
            shown.tile_done("33TWM")
        assert drain(master) == b""
    os.close(master)

    # not a terminal: not a byte either, whatever the setting
    monkeypatch.delenv(progress.ENV)
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as pipe:
        for enabled in (None, True):
            with progress.listen(None, 1, stream=pipe, enabled=enabled) as shown:
                progress.report("t", "read", 1, 2)
                shown.tile_done("t")
                assert shown.done == 1
    assert drain(read_end) == b""
    os.close(read_end)


def test_default_stream_is_stderr_and_stays_quiet_off_a_terminal(capfd):
    with progress.listen(None, 1) as shown:
        progress.report("t", "read", 1, 2)
        shown.tile_done("t")
    assert capfd.readouterr().err == ""


def test_a_late_event_does_not_revive_a_finished_tile():
    with progress.listen(None, 2, stream=None) as shown:
        progress.report("a", "compute", 9, 10)
        shown.tile_done({"tile_id": "a", "status": "failed"})
        progress.report("a", "compute", 10, 10)
        assert shown.running == {} and (shown.done, shown.failed) == (1, 1)
        assert shown.line() == "tiles 1/2 (1 failed)"


@pytest.mark.filterwarnings("ignore:Artifact creation outside:FutureWarning")
def test_a_failing_artifact_never_fails_the_run():
    """With an API URL nobody answers at (port 9, discard): the artifact cannot be made,
    and the run goes on."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_CLIENT_MAX_RETRIES,
        temporary_settings,
    )

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api",
                                     PREFECT_CLIENT_MAX_RETRIES: 0}):
        with progress.listen(None, 2, stream=None, artifact=True) as shown:
            shown.tile_done("t")
            shown.tile_done("u")
    assert shown.done == 2 and shown._artifact_id is None


@pytest.fixture(autouse=True)
def _no_leftover_listeners():
    yield
    assert progress._listeners == [] and progress._scope_workers == []
    dask.config.refresh()
