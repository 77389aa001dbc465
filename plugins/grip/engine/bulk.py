"""Process settings for bulk work: the cyclic collector paused, no transparent huge pages."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

_PR_SET_THP_DISABLE = 41
_PR_GET_THP_DISABLE = 42

_lock = threading.Lock()
_holders = 0
_restore_gc = False
_restore_thp: int | None = None


@contextlib.contextmanager
def bulk_work() -> Iterator[None]:
    """Run a block that makes and drops large arrays and millions of objects, chunk by chunk.

    Two settings of the process change for the block's duration and are restored after it
    (blocks that nest or overlap in threads share them: the first in sets them, the last out
    restores them):

    - The cyclic garbage collector is paused. Otherwise the objects a block makes trigger full
      collections that walk every object of the process (Airflow's, SQLAlchemy's, pandas') in
      search of cycles the block does not make; reference counting still frees everything.
    - Transparent huge pages are disabled (Linux). numpy and Arrow's allocator ask for them for
      large buffers, and the kernel then clears 2 MiB at the first touch of each: a pipeline
      that frees its buffers after every chunk and takes fresh ones for the next spent a fifth
      of its CPU time clearing pages.

    The settings only change how memory is handed out and when cycles are collected; nothing
    computed depends on them.
    """
    _enter()
    try:
        yield
    finally:
        _leave()


def huge_pages_disabled() -> bool | None:
    """Whether transparent huge pages are disabled for this process; None off Linux."""
    value = _prctl(_PR_GET_THP_DISABLE)
    return None if value is None else bool(value)


def _enter() -> None:
    global _holders, _restore_gc, _restore_thp
    with _lock:
        _holders += 1
        if _holders > 1:
            return
        _restore_gc = gc.isenabled()
        gc.disable()
        _restore_thp = _prctl(_PR_GET_THP_DISABLE)
        if _restore_thp == 0 and _prctl(_PR_SET_THP_DISABLE, 1) is None:
            _restore_thp = None


def _leave() -> None:
    global _holders
    with _lock:
        _holders -= 1
        if _holders:
            return
        if _restore_thp == 0:
            _prctl(_PR_SET_THP_DISABLE, 0)
        if _restore_gc:
            gc.enable()


def _prctl(option: int, value: int = 0) -> int | None:
    """``prctl(option, value)``'s answer, or None where there is no such call or it failed."""
    prctl = _prctl_call()
    if prctl is None:
        return None
    answer = int(prctl(option, value, 0, 0, 0))
    if answer < 0:
        log.debug("prctl(%d) failed: errno %d", option, ctypes.get_errno())
        return None
    return answer


@functools.cache
def _prctl_call() -> Any:
    """The C library's ``prctl``, looked up once; None off Linux or where it is missing."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
