"""Bulk work's process settings: set inside the block, restored after it, shared by blocks."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator

import pytest

from grip.engine.bulk import bulk_work, huge_pages_disabled

on_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="transparent huge pages are a Linux setting"
)


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_paused_inside_and_running_again_after() -> None:
    with bulk_work():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_paused_before_the_block_stays_paused_after_it() -> None:
    gc.disable()
    with bulk_work():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_settings_are_restored_when_the_block_raises() -> None:
    before = huge_pages_disabled()
    with pytest.raises(RuntimeError, match="source broke"), bulk_work():
        raise RuntimeError("source broke")
    assert gc.isenabled()
    assert huge_pages_disabled() == before


@on_linux
def test_huge_pages_are_disabled_inside_and_restored_after() -> None:
    assert huge_pages_disabled() is False, "the test process starts with huge pages allowed"
    with bulk_work():
        assert huge_pages_disabled() is True
    assert huge_pages_disabled() is False


@on_linux
def test_nested_blocks_restore_only_when_the_outermost_ends() -> None:
    with bulk_work():
        with bulk_work():
            assert huge_pages_disabled() is True
        assert not gc.isenabled()
        assert huge_pages_disabled() is True
    assert gc.isenabled()
    assert huge_pages_disabled() is False


def test_blocks_overlapping_in_threads_restore_when_the_last_one_ends() -> None:
    inside = threading.Event()
    leave = threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with bulk_work():
            inside.set()
            leave.wait(10)
        seen.append(gc.isenabled())

    thread = threading.Thread(target=other)
    with bulk_work():
        thread.start()
        assert inside.wait(10)
    # this block ended first: the other thread's block still holds the settings
    assert not gc.isenabled()
    leave.set()
    thread.join(10)
    assert seen == [True]
    assert gc.isenabled()
