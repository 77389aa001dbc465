"""Reading ahead in a thread: order, errors and stopping early."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from grip.engine.prefetch import prefetch
from grip.errors import SourceError


def test_items_arrive_in_order_and_all() -> None:
    assert list(prefetch(iter(range(1000)), depth=3)) == list(range(1000))
    assert list(prefetch([])) == []


def test_the_producer_runs_ahead_in_another_thread() -> None:
    producers: set[str] = set()

    def items() -> Iterator[int]:
        for i in range(3):
            producers.add(threading.current_thread().name)
            yield i

    assert list(prefetch(items())) == [0, 1, 2]
    assert producers == {"grip-read-ahead"}


def test_an_error_of_the_producer_is_raised_to_the_consumer() -> None:
    def items() -> Iterator[int]:
        yield 1
        raise SourceError("visitors.csv:3: broken line")

    reader = prefetch(items())
    assert next(reader) == 1
    with pytest.raises(SourceError, match="visitors.csv:3: broken line"):
        next(reader)


def test_closing_early_stops_the_producer() -> None:
    taken: list[int] = []

    def items() -> Iterator[int]:
        for i in range(1_000_000):
            taken.append(i)
            yield i

    reader = prefetch(items(), depth=2)
    assert next(reader) == 0
    reader.close()
    count = len(taken)
    time.sleep(0.3)
    assert len(taken) == count
    assert count <= 5
