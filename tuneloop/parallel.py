"""CPU-bound work on a stream, across the machine's cores, in order, with bounded memory.

The data path validates rows in Python a batch at a time. On a task with several vCPUs (a Vertex
machine, a laptop) :func:`ordered_map` hands batches to worker processes and yields their results in
input order, keeping at most ``2 x workers`` batches in flight, so memory stays at a few batches
whatever the size of the stream. Small streams never start a worker: the first ``min_items`` items run
in this process (a test's or a small run's extract costs no process start). A caller that knows early
that the work is large starts a :class:`Pool` first, so the workers import while it does other work
(the dataset build starts them before the merge, the extract at its first full batch).

``TUNELOOP_WORKERS`` sets the number of worker processes (``1`` = all in this process); by default it
is the CPUs this process may run on. Workers are plain ``python`` child processes fed over pipes
(pickled items and results): unlike ``multiprocessing``'s spawn they never re-run the caller's main
script (a script without an ``if __name__ == "__main__"`` guard works), and unlike fork they are safe
next to a DuckDB connection's threads. They get this process's ``sys.path``, so they import the same code.
"""

from __future__ import annotations

import importlib
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, BinaryIO, TypeVar

T = TypeVar("T")
R = TypeVar("R")

ENV = "TUNELOOP_WORKERS"
_HEADER = struct.Struct("!Q")
_BOOT = ("import sys, pickle; sys.path[:], preload = pickle.load(sys.stdin.buffer); "
         "from tuneloop.parallel import _serve; _serve(preload)")


def default_workers() -> int:
    """``TUNELOOP_WORKERS`` if set (an integer >= 1), else the CPUs this process may use."""
    raw = os.environ.get(ENV, "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"{ENV}={raw!r} must be an integer >= 1 (1 = no worker processes)")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _send(fh: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    fh.write(_HEADER.pack(len(data)))
    fh.write(data)
    fh.flush()


def _recv(fh: BinaryIO) -> Any:
    head = fh.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(head)
    data = fh.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def _serve(preload: Sequence[str] = ()) -> None:
    """A worker: imports ``preload``, then ``(module, function, item)`` in, ``(True, result)`` or
    ``(False, error)`` out, until EOF."""
    src, dst = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything the work prints goes to the log, not into the result pipe
    for module in preload:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the task that needs it raises the error at its item
            pass
    while True:
        try:
            module, name, item = _recv(src)
        except EOFError:
            return
        try:
            reply: tuple[bool, Any] = (True, getattr(importlib.import_module(module), name)(item))
        except BaseException as exc:  # noqa: BLE001 - sent back and raised in the caller
            try:
                pickle.dumps(exc)
                reply = (False, exc)
            except Exception:  # an exception that does not pickle: its text
                reply = (False, RuntimeError("".join(traceback.format_exception(exc)).strip()))
        _send(dst, reply)


class _Worker:
    """One child process and the thread that feeds it (so a full result pipe never blocks the feeding)."""

    def __init__(self, preload: Sequence[str] = ()) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        pickle.dump((list(sys.path), list(preload)), self.proc.stdin)
        self.proc.stdin.flush()
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        while (task := self.inbox.get()) is not None:
            try:
                _send(self.proc.stdin, task)
            except (BrokenPipeError, OSError):  # the worker died: the reader says so
                return
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def result(self) -> Any:
        try:
            ok, value = _recv(self.proc.stdout)
        except EOFError:
            code = self.proc.wait()
            raise RuntimeError(
                f"a {ENV} worker process exited (code {code}) before returning its result; if it was killed for "
                f"memory, set {ENV}=1 (one process) or give the task more memory"
            ) from None
        if not ok:
            raise value
        return value

    def close(self) -> None:
        self.inbox.put(None)
        self.thread.join(timeout=5)
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait()
        self.proc.stdout.close()


class Pool:
    """Worker processes started now, so they import while this process does other work (a merge, a
    query); :meth:`map` then hands them items. ``preload`` names modules each worker imports at start
    (the module of the function it will run, for one). One map at a time; close it (or use ``with``).

    ``workers`` defaults to :func:`default_workers`; with 1 there are no processes and :meth:`map` runs
    in this one.
    """

    def __init__(self, workers: int | None = None, *, preload: Sequence[str] = ()) -> None:
        self.workers = default_workers() if workers is None else workers
        self._pool = [_Worker(preload) for _ in range(self.workers)] if self.workers > 1 else []

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, min_items: int = 0) -> Iterator[R]:
        """``fn(item)`` for each item, in order: the first ``min_items`` here, the rest in the workers
        (``fn`` must be a module-level function; items and results are pickled), at most ``2 x workers``
        in flight. An exception in ``fn`` is raised here at its item's turn, and nothing after it is yielded."""
        it = iter(items)
        pool, n = self._pool, len(self._pool)
        for _ in range(min_items if n else sys.maxsize):
            try:
                item = next(it)
            except StopIteration:
                return
            yield fn(item)
        task = (fn.__module__, fn.__qualname__)
        sent = done = 0
        try:
            for x in it:
                pool[sent % n].inbox.put((*task, x))
                sent += 1
                while sent - done >= 2 * n:
                    done += 1
                    yield pool[(done - 1) % n].result()
            while done < sent:
                done += 1
                yield pool[(done - 1) % n].result()
        finally:  # stopped early (an error, or the caller stopped): the results in flight are not the next map's
            while done < sent:
                done += 1
                try:
                    pool[(done - 1) % n].result()
                except Exception:  # noqa: BLE001 - discarded with its result
                    pass

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        pool, self._pool = self._pool, []
        for w in pool:
            w.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int | None = None,
                min_items: int = 2) -> Iterator[R]:
    """``fn(item)`` for each item, in order: in this process for the first ``min_items`` items, then
    across ``workers`` child processes started when a further item arrives (see :class:`Pool`).
    An exception in ``fn`` is raised here at its item's turn, and nothing after it is yielded.
    """
    n = default_workers() if workers is None else workers
    it = iter(items)
    for _ in range(min_items if n > 1 else sys.maxsize):
        try:
            item = next(it)
        except StopIteration:
            return
        yield fn(item)
    try:
        first = next(it)
    except StopIteration:
        return
    with Pool(n, preload=(fn.__module__,)) as pool:
        yield from pool.map(fn, _chain(first, it))


def _chain(first: T, rest: Iterator[T]) -> Iterator[T]:
    yield first
    yield from rest
