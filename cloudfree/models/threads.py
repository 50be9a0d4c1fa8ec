"""torch's CPU thread count, held per section (:func:`torch_threads`): the same result
whatever the machine's thread count, and whatever else runs in the process."""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator

import torch


class _ThreadGate:
    """Who runs torch at which thread count: torch's count is the process's (MKL's is
    global), so a section at one count and a concurrent one at another would change each
    other's (measured: a head trained beside a one-thread matrix product came out other
    than alone). Sections at the same count run together; one at another count waits
    until they are done, and sections enter in the order they came (a stream of short
    sections at one count starved a training at another). The count before the first is
    restored after the last."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.count = 0
        self.users = 0
        self.before = 0
        self.local = threading.local()
        self.queue: collections.deque[object] = collections.deque()

    @contextlib.contextmanager
    def hold(self, count: int) -> Iterator[None]:
        if getattr(self.local, "depth", 0):  # nested in this thread: the outer count holds
            self.local.depth += 1
            try:
                yield
            finally:
                self.local.depth -= 1
            return
        ticket = object()
        with self.condition:
            # first come, first served: a section at the running count does not overtake
            # one waiting for another count (it would starve behind a stream of them)
            self.queue.append(ticket)
            while self.queue[0] is not ticket or (self.users and self.count != count):
                self.condition.wait()
            self.queue.popleft()
            if not self.users:
                self.before, self.count = torch.get_num_threads(), count
                if self.before != count:
                    torch.set_num_threads(count)
            self.users += 1
            self.condition.notify_all()  # the next in line may join at the same count
        self.local.depth = 1
        try:
            yield
        finally:
            self.local.depth = 0
            with self.condition:
                self.users -= 1
                if not self.users:
                    if self.before != count:
                        torch.set_num_threads(self.before)
                    self.condition.notify_all()


_GATE = _ThreadGate()


def torch_threads(count: int = 1) -> contextlib.AbstractContextManager[None]:
    """Run torch's CPU kernels on ``count`` intra-op threads (the count before is restored
    after): the same result whatever the machine's thread count (see
    :data:`cloudfree.models.head.TRAIN_THREADS`), and whatever runs beside it in other threads of the process
    (:class:`_ThreadGate`: a section at another count waits). One, the default, for the
    head's predictions and one evaluation frame: they are small and run beside other
    chunks' tasks, and one thread measured 3-4x faster on our busy 2-core machine, not
    slower."""
    return _GATE.hold(count)
