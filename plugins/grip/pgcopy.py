"""PostgreSQL's COPY TO STDOUT through an OS pipe, for the SQL source and the ledger.

COPY is the fastest way out of PostgreSQL. The driver writes its text into one end of a pipe
on a thread of its own while the caller parses the other end with Arrow, so that the text is
never held whole in memory and both sides work at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

COPY_BLOCK = 1 << 20
"""How much of COPY's text the pipe and its buffered ends hold, in bytes."""


def pipe() -> tuple[Any, Any]:
    """A pipe as a buffered reader and writer; the kernel's buffer widened to a block if it can.

    COPY hands its writer one row at a time: a buffered file's ``write`` takes each in C,
    and the interpreter is released while a full buffer goes into the pipe.
    """
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError, AttributeError):
        import fcntl

        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, COPY_BLOCK)
    return open(read_fd, "rb", buffering=COPY_BLOCK), open(write_fd, "wb", buffering=COPY_BLOCK)


def is_psycopg2(raw: Any) -> bool:
    """Whether a PostgreSQL driver connection is psycopg2's (else psycopg 3's)."""
    return type(raw).__module__.startswith("psycopg2")


def copy_out(raw: Any, copy_sql: str, sink: Any) -> None:
    """Run ``COPY ... TO STDOUT`` on a driver connection, writing its text into ``sink``."""
    if is_psycopg2(raw):
        with raw.cursor() as cursor:
            cursor.copy_expert(copy_sql, sink)
    else:
        with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:
            for data in copy:
                sink.write(data)


class CopyReader:
    """COPY's text as a readable file, while a thread runs the COPY into the pipe's other end.

    Use it as a context manager and read it to its end; :meth:`check` then raises what the
    COPY raised, if anything (a COPY that fails only ends the text early). Leaving the block
    early cancels the COPY.

    Args:
        raw: the driver's connection (psycopg2 or psycopg 3); nothing else may use it meanwhile.
        copy_sql: a ``COPY (...) TO STDOUT`` statement.
    """

    def __init__(self, raw: Any, copy_sql: str):
        self.raw = raw
        self.copy_sql = copy_sql
        self.file, self._sink = pipe()
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._produce, name="grip-copy", daemon=True)

    def __enter__(self) -> CopyReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive() and exc[0] is not None:
            with contextlib.suppress(Exception):
                self.raw.cancel()
        # NOTE: a writer still blocked on the full pipe gets a broken pipe and stops
        self.file.close()
        self._thread.join(timeout=30)

    def check(self) -> None:
        """Wait for the COPY to end; raise its error if it failed.

        Only once the text has been read to its end: a COPY with text left waits for a reader.
        """
        self._thread.join()
        self.raise_failure()

    def raise_failure(self) -> None:
        """Raise the COPY's error if it has failed already; return at once otherwise.

        A COPY that fails ends its text early: a reader that finds the text cut short asks
        here for the cause.
        """
        if self._failure:
            raise self._failure[0]

    def _produce(self) -> None:
        try:
            copy_out(self.raw, self.copy_sql, self._sink)
        except BrokenPipeError:
            pass  # the reader went away
        except BaseException as err:
            self._failure.append(err)
        finally:
            with contextlib.suppress(OSError):
                self._sink.close()


def sends_valid_utf8(raw: Any) -> bool:
    """Whether PostgreSQL checks every text it sends on this connection as valid UTF-8.

    It does when the client encoding is UTF-8 and the server's is a real one (with SQL_ASCII
    the bytes are stored and sent unchecked); Arrow then need not check them again.
    """
    try:
        if is_psycopg2(raw):
            client = raw.encoding
            server = raw.get_parameter_status("server_encoding")
        else:
            client = raw.info.parameter_status("client_encoding")
            server = raw.info.parameter_status("server_encoding")
    except Exception:
        return False
    names = [v.decode() if isinstance(v, bytes) else v for v in (client, server)]
    if any(not isinstance(v, str) for v in names):
        return False
    client_name, server_name = (v.upper().replace("-", "") for v in names)
    return client_name in ("UTF8", "UNICODE") and server_name != "SQLASCII"
