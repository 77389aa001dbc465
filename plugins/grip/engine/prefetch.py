"""Reading ahead: a source's next chunk is read while the current one is planned."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(
    items: Iterable[Any], depth: int = 2, transform: Callable[[Any], T] | None = None
) -> Generator[T, None, None]:
    """Yield the items of ``items``, produced by a background thread up to ``depth`` ahead.

    ``transform``, if given, is applied to each item in that thread too (work that does not
    hold the interpreter, like Arrow's compute functions, then runs beside the consumer).

    The database driver, Arrow's parsers and the network release the interpreter while they
    work, so reading the next chunk overlaps with planning the current one. An error of the
    producer is raised here, in the consumer; closing the generator early stops the producer
    before it takes another item.
    """
    box: queue.Queue[Any] = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def produce() -> None:
        try:
            for raw in items:
                item = raw if transform is None else transform(raw)
                while not stop.is_set():
                    try:
                        box.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(_END)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            box.put(_Failure(err))

    thread = threading.Thread(target=produce, name="grip-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = box.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                box.get(timeout=0.1)
            except queue.Empty:
                continue
        thread.join()
