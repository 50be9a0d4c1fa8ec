"""Progress of long work: tiles done of total, and the steps inside a tile.

Work reports with :func:`report` wherever it runs. On a Dask worker the report becomes a
distributed event on topic :data:`TOPIC`, which reaches every client subscribed to it; in
the flow process (or with no cluster at all) it goes to the listeners of this process.
:func:`listen`, in the flow process, is both: it subscribes to the topic and listens
locally, and shows what it hears:

* on a terminal (``sys.stderr.isatty()``, and ``CLOUDFREE_PROGRESS`` is not ``0``), one
  line redrawn in place: tiles done of total, and each running tile's current stage and
  step (``generator 12/40 chunks``);
* inside a Prefect flow run, a progress artifact (tiles done, in percent), kept up to date.

Quiet otherwise: not a byte on stderr when it is not a terminal or ``--json`` set
``CLOUDFREE_PROGRESS=0``. Progress never fails the work it watches: a report nobody hears
costs a dict, a report that cannot be sent is dropped, an artifact that cannot be updated
is left behind.

The steps inside a tile come from :func:`dask_tasks`, a dask callback given to the tile's
compute with a local scheduler (the threaded one, inside a worker's task): it counts
tasks by kind (``read`` for the source reads, ``generator`` for the network's
chunks, ``head`` for the test-time head, ``compute`` for everything), so the methods need
no hooks of their own. Other long steps (COG writing) call :func:`report` or
:func:`steps`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from dask.callbacks import Callback, normalize_callback

logger = logging.getLogger(__name__)

#: The distributed event topic of progress reports.
TOPIC = "cloudfree-progress"
#: The environment variable that turns the terminal display off (``0``); the CLI sets it
#: for ``--json``.
ENV = "CLOUDFREE_PROGRESS"

Event = dict[str, Any]
Listener = Callable[[Event], None]

_listeners: list[Listener] = []
_lock = threading.Lock()
#: Workers captured by active :func:`dask_tasks` scopes, for reports from threads that do
#: not run a distributed task themselves (a threaded scheduler's pool inside a task).
_scope_workers: list[Any] = []


def _current_worker() -> Any:
    """The Dask worker running this task, or (in a thread of a local scheduler inside
    such a task) the worker of the innermost active :func:`dask_tasks` scope, or None."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        pass
    with _lock:
        return _scope_workers[-1] if _scope_workers else None


def active() -> bool:
    """Whether a report would go anywhere: on a worker (someone may subscribe) or with a
    listener in this process. Work may skip preparing reports when not."""
    return bool(_listeners) or _current_worker() is not None


def _send(event: Event, worker: Any) -> None:
    if worker is not None:
        try:
            worker.log_event(TOPIC, event)
        except Exception:  # a closing worker, a comm error: progress never fails work
            logger.debug("progress event dropped", exc_info=True)
        return
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            logger.debug("progress listener failed", exc_info=True)


def report(tile_id: str, stage: str, done: int, total: int, *, unit: str = "") -> None:
    """Tile ``tile_id`` has done ``done`` of ``total`` steps of ``stage`` (``unit``: what a
    step is, e.g. ``chunks``). Callable anywhere, at no cost when nobody listens."""
    event: Event = {"tile": str(tile_id), "stage": str(stage), "done": int(done),
                    "total": int(total), "unit": str(unit)}
    _send(event, _current_worker())


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call ``listener(event)`` for every report made in this process (off a worker) while
    inside; :func:`listen` is the flow's listener, this is the bare hook."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


@dataclass
class Steps:
    """A counter for a stage of known length: ``advance()`` after each step reports it.
    :func:`steps` makes one and reports 0 of ``total``."""

    tile_id: str
    stage: str
    total: int
    unit: str = ""
    done: int = 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        report(self.tile_id, self.stage, self.done, self.total, unit=self.unit)


def steps(tile_id: str, stage: str, total: int, *, unit: str = "") -> Steps:
    """E.g. in ``write_tile``: ``s = steps(tile.tile_id, "write", len(files), unit="files")``,
    then ``s.advance()`` after each upload."""
    counter = Steps(tile_id, stage, total, unit)
    report(tile_id, stage, 0, total, unit=unit)
    return counter


# --------------------------------------------------------------------------- dask tasks

#: Task kinds by the start of their key name (as :func:`dask.utils.key_split` gives it):
#: (stage, unit). Every task also counts towards ``compute``. Dask's low-level fusion
#: renames fused tasks, so with fusion on (the composites) only ``compute`` is certain;
#: the generator computes with fusion off (its ``COMPUTE_CONFIG``) and shows them all.
TASK_STAGES: tuple[tuple[str, str, str], ...] = (
    ("fetch_raster_window", "read", "chunks"),
    ("generator-block", "generator", "chunks"),
    ("features_block", "head", "steps"),
    ("samples_block", "head", "steps"),
    ("train_block", "head", "steps"),
    ("filling_block", "head", "steps"),
    ("apply_block", "head", "steps"),
    ("apply_pair_block", "head", "steps"),
    ("sums_block", "correction", "steps"),
    ("corrected_block", "correction", "steps"),
)


def _task_stage(key: Any) -> tuple[str, str] | None:
    from dask.utils import key_split

    name = key_split(key)
    for prefix, stage, unit in TASK_STAGES:
        if name.startswith(prefix):
            return stage, unit
    return None


#: When tasks of several kinds run at once, the one a report names: the long ones first.
STAGE_PRIORITY = ("generator", "head", "correction", "read")


class _TaskProgress(Callback):
    """Counts a local scheduler's tasks by kind and reports what the tile is busy with:
    the highest kind of :data:`STAGE_PRIORITY` with a task running (else ``compute``),
    with its done and total, at once when that changes, else at most every ``interval``
    seconds, and ``compute`` complete at the end. The callbacks run in the thread that
    called compute (dask's local scheduler calls them there); the reports go through the
    worker captured when the scope opened. Only the thread that made it counts (a
    safeguard should it be installed globally, where every thread's compute calls it)."""

    def __init__(self, tile_id: str, worker: Any, interval: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.thread = threading.get_ident()
        self.tile_id = tile_id
        self.worker = worker
        self.interval = interval
        self.totals: dict[str, int] = {}
        self.units: dict[str, str] = {}
        self.done: dict[str, int] = {}
        self.running: dict[str, int] = {}
        self.last = 0.0
        self.last_stage = ""

    def _event(self, stage: str) -> Event:
        return {"tile": self.tile_id, "stage": stage, "done": self.done.get(stage, 0),
                "total": self.totals.get(stage, 0), "unit": self.units.get(stage, "tasks")}

    def _emit(self, *, force: bool = False) -> None:
        stage = next((s for s in STAGE_PRIORITY if self.running.get(s)), "compute")
        now = time.monotonic()
        if force or stage != self.last_stage or now - self.last >= self.interval:
            self.last, self.last_stage = now, stage
            _send(self._event(stage), self.worker)

    def _start_state(self, dsk: Any, state: Any) -> None:
        if threading.get_ident() != self.thread:
            return
        self.totals = {"compute": len(dsk)}
        self.units = {"compute": "tasks"}
        for key in dsk:
            kind = _task_stage(key)
            if kind is not None:
                self.totals[kind[0]] = self.totals.get(kind[0], 0) + 1
                self.units[kind[0]] = kind[1]
        self.done = dict.fromkeys(self.totals, 0)
        self.running = dict.fromkeys(self.totals, 0)
        self._emit(force=True)

    def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
        if threading.get_ident() != self.thread:
            return
        kind = _task_stage(key)
        if kind is not None:
            self.running[kind[0]] = self.running.get(kind[0], 0) + 1
            self._emit()

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if threading.get_ident() != self.thread:
            return
        kind = _task_stage(key)
        self.done["compute"] = self.done.get("compute", 0) + 1
        if kind is not None:
            self.done[kind[0]] = self.done.get(kind[0], 0) + 1
            self.running[kind[0]] = max(self.running.get(kind[0], 0) - 1, 0)
        self._emit()

    def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
        if threading.get_ident() != self.thread:
            return
        if not errored:  # some keys are aliases or data, never run as tasks: all done
            self.done = dict(self.totals)
            self.running = {}
            self._emit(force=True)


@contextlib.contextmanager
def dask_tasks(tile_id: str, *, interval: float = 0.5) -> Iterator[tuple[Any, ...]]:
    """The dask callbacks that report the progress of a compute as tile ``tile_id``'s
    steps: pass them to it, ``x.compute(callbacks=callbacks)`` (local schedulers: threaded,
    synchronous; the distributed one ignores them). Never installed globally: dask's global
    callbacks are one set per process, which tiles computing at once in one worker would
    share (and reset). While inside, reports from threads without a task of their own (a
    local scheduler's pool) go through this task's worker. Empty, and free, when nobody
    listens."""
    worker = _current_worker()
    if worker is None and not _listeners:
        yield ()
        return
    if worker is not None:
        with _lock:
            _scope_workers.append(worker)
    try:
        # as dask's local schedulers take them: (start, start_state, pretask, posttask,
        # finish) tuples
        yield (normalize_callback(_TaskProgress(str(tile_id), worker, interval)),)
    finally:
        if worker is not None:
            with _lock:
                _scope_workers.remove(worker)


# --------------------------------------------------------------------------- listening


def _describe(outcome: Any) -> tuple[str | None, str]:
    """(tile id, status) of a :class:`~cloudfree.tile.TileOutcome`, a dict or a tile id."""
    if isinstance(outcome, str):
        return outcome, "done"
    if isinstance(outcome, dict):
        return outcome.get("tile_id"), str(outcome.get("status", "done"))
    return getattr(outcome, "tile_id", None), str(getattr(outcome, "status", "done"))


@dataclass
class Progress:
    """What :func:`listen` hears: tiles done of ``total_tiles``, each running tile's last
    report. Thread-safe: events arrive on the client's thread, outcomes on the flow's."""

    total_tiles: int
    stream: TextIO | None = None
    artifact: bool = False
    min_redraw_s: float = 0.1
    done: int = 0
    failed: int = 0
    running: dict[str, Event] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    events: int = 0
    min_artifact_s: float = 1.0
    _artifact_id: Any = None
    _artifact_at: float = 0.0
    _last_draw: float = 0.0
    _shown: bool = False
    _closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _io: threading.Lock = field(default_factory=threading.Lock)

    # -- input

    def handle(self, event: Event) -> None:
        """One progress report (see :func:`report`)."""
        if self._closed or not isinstance(event, dict) or "tile" not in event:
            return
        with self._lock:
            self.events += 1
            tile_id = str(event["tile"])
            if tile_id in self.finished:  # a late event: it travelled slower than the outcome
                return
            self.running[tile_id] = event
        self._draw()

    def _on_distributed(self, event: Any) -> None:
        """A distributed event: ``(timestamp, msg)``."""
        try:
            _, msg = event
        except (TypeError, ValueError):
            return
        self.handle(msg)

    def tile_done(self, outcome: Any) -> None:
        """A tile finished (an outcome with ``tile_id`` and ``status``, or a tile id)."""
        tile_id, status = _describe(outcome)
        with self._lock:
            self.done += 1
            self.failed += status == "failed"
            if tile_id is not None:
                self.running.pop(str(tile_id), None)
                self.finished.add(str(tile_id))
        self._draw(force=True)
        self._update_artifact()

    # -- output

    def line(self) -> str:
        """The display's text: ``tiles 3/8 (1 failed) | 33TWM: generator 12/40 chunks``."""
        with self._lock:
            failed = f" ({self.failed} failed)" if self.failed else ""
            parts = [f"tiles {self.done}/{self.total_tiles}{failed}"]
            for tile_id, ev in list(self.running.items())[:4]:
                unit = f" {ev['unit']}" if ev.get("unit") else ""
                parts.append(f"{tile_id}: {ev['stage']} {ev['done']}/{ev['total']}{unit}")
            if len(self.running) > 4:
                parts.append(f"+{len(self.running) - 4} more")
        return " | ".join(parts)

    def _draw(self, force: bool = False) -> None:
        if self.stream is None or self._closed:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_redraw_s:
            return
        self._last_draw = now
        text = self.line()
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns or 120
        except (OSError, ValueError, AttributeError):
            columns = 120  # a terminal that does not say its width
        text = text[: max(columns - 1, 10)]
        with self._io:
            try:
                self.stream.write("\r" + text + "\x1b[K")
                self.stream.flush()
                self._shown = True
            except (OSError, ValueError):  # the terminal went away: stop drawing
                self.stream = None

    def clear_line(self) -> None:
        """Wipe the drawn line, so that a log line written next starts on a clean line
        (the next report draws it again); see :func:`_log_lines_first`."""
        with self._io:
            if self.stream is None or not self._shown:
                return
            try:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            except (OSError, ValueError):
                self.stream = None
            self._shown = False

    def _update_artifact(self) -> None:
        """Create, then update, the artifact: at most once a second, and at the last tile."""
        if not self.artifact:
            return
        now = time.monotonic()
        midway = self._artifact_id is not None and self.done < self.total_tiles
        if midway and now - self._artifact_at < self.min_artifact_s:
            return
        self._artifact_at = now
        percent = 100.0 * self.done / self.total_tiles if self.total_tiles else 100.0
        description = f"{self.done} of {self.total_tiles} tiles done" + (
            f", {self.failed} failed" if self.failed else "")
        try:
            from prefect import artifacts

            # ``_sync=True``: the sync implementation even when called from async code
            create_progress_artifact: Any = artifacts.create_progress_artifact
            update_progress_artifact: Any = artifacts.update_progress_artifact
            if self._artifact_id is None:
                self._artifact_id = create_progress_artifact(
                    progress=percent, description=description, _sync=True)
            else:
                update_progress_artifact(self._artifact_id, progress=percent,
                                         description=description, _sync=True)
        except Exception:  # an unreachable Prefect server never fails (nor slows) the run
            logger.debug("progress artifact not updated; no more tries", exc_info=True)
            self.artifact = False

    def close(self) -> None:
        self._draw(force=True)
        self._closed = True
        with self._io:
            if self.stream is not None and self._shown:
                with contextlib.suppress(OSError, ValueError):
                    self.stream.write("\n")  # the last line stays
                    self.stream.flush()


class _ClearLine(logging.Filter):
    """A handler filter that wipes the progress line before the handler writes a record."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self.progress.clear_line()
        return True


def _same_stream(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a.fileno() == b.fileno())
    except (AttributeError, OSError, ValueError):
        return False


@contextlib.contextmanager
def _log_lines_first(progress: Progress, stream: TextIO) -> Iterator[None]:
    """While inside, every logging handler that writes to ``stream`` (Prefect's console
    handler, a CLI's) wipes the progress line before each record, so log lines never
    run into it."""
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values()
                                      if isinstance(v, logging.Logger))]
    handlers = {id(h): h for lg in loggers for h in lg.handlers
                if isinstance(h, logging.StreamHandler)
                and _same_stream(getattr(h, "stream", None), stream)}
    clear = _ClearLine(progress)
    for handler in handlers.values():
        handler.addFilter(clear)
    try:
        yield
    finally:
        for handler in handlers.values():
            handler.removeFilter(clear)


def _in_flow_run() -> bool:
    try:
        from prefect.context import FlowRunContext

        return FlowRunContext.get() is not None
    except Exception:
        return False


def display_enabled(stream: TextIO, enabled: bool | None = None) -> bool:
    """Whether to draw on ``stream``: never unless it is a terminal; then ``enabled``, or
    by default unless ``CLOUDFREE_PROGRESS=0``."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty or enabled is False:
        return False
    return enabled is True or os.environ.get(ENV, "1") != "0"


@contextlib.contextmanager
def listen(client: Any, total_tiles: int, *, enabled: bool | None = None,
           stream: TextIO | None = None, artifact: bool | None = None) -> Iterator[Progress]:
    """Hear the progress of a run of ``total_tiles`` tiles, in the flow process.

    Subscribes ``client`` (a distributed client, or None for in-process work only) to
    :data:`TOPIC` and listens to this process's reports; draws on ``stream`` (default
    stderr) per :func:`display_enabled`; keeps a Prefect progress artifact when inside a
    flow run (``artifact``: default auto). Call ``.tile_done(outcome)`` on the yielded
    :class:`Progress` as each tile finishes."""
    stream = sys.stderr if stream is None else stream
    progress = Progress(total_tiles=total_tiles,
                        stream=stream if display_enabled(stream, enabled) else None,
                        artifact=_in_flow_run() if artifact is None else artifact)
    progress._update_artifact()
    subscribed = False
    if client is not None:
        try:
            client.subscribe_topic(TOPIC, progress._on_distributed)
            subscribed = True
        except Exception:
            logger.debug("not subscribed to %s", TOPIC, exc_info=True)
    try:
        with listening(progress.handle), (_log_lines_first(progress, stream)
                                          if progress.stream is not None
                                          else contextlib.nullcontext()):
            yield progress
    finally:
        if subscribed:
            with contextlib.suppress(Exception):
                client.unsubscribe_topic(TOPIC)
        progress.close()


__all__ = ("ENV", "TOPIC", "Progress", "Steps", "active", "dask_tasks", "display_enabled",
           "listen", "listening", "report", "steps")
