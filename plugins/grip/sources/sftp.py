"""SFTP drops: list a remote folder, download the chosen files, archive them after a run."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import posixpath
import socket
import stat
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grip.errors import ConfigError, SourceError
from grip.sources.base import SourceFile
from grip.sources.files import DropSource, Listed, archive_name, file_settings

if TYPE_CHECKING:
    import paramiko

    from grip.sources.config import SftpSourceConfig

logger = logging.getLogger(__name__)

_BLOCK = 1 << 20


class SftpSource(DropSource):
    """Files matching a pattern in a folder of an SFTP server.

    The server's host key is always checked: outside Airflow against ``host_key`` or the
    ``known_hosts`` file (``~/.ssh/known_hosts`` when neither is set). Each chosen file is
    downloaded into a private temporary folder (refused above ``max_bytes``), hashed, checked
    to be unchanged since it was listed, then read in chunks; the folder is removed on close.
    """

    kind = "sftp"

    def __init__(
        self,
        config: SftpSourceConfig,
        *,
        client: paramiko.SFTPClient | Callable[[], paramiko.SFTPClient] | None = None,
        processed: Collection[SourceFile] | Collection[str] = (),
        required_columns: Collection[str] | None = None,
    ) -> None:
        folder = config.folder.rstrip("/") or "/"
        archive = config.archive_folder
        if archive and not archive.startswith("/"):
            archive = posixpath.join(folder, archive)
        super().__init__(
            folder=folder,
            pattern=config.pattern,
            select=config.select,
            settings=file_settings(config),
            archive_folder=archive,
            settle_seconds=config.settle_seconds,
            processed=processed,
            required_columns=required_columns,
            temp_dir=config.temp_dir,
        )
        self.config = config
        self._given = client
        self._client: paramiko.SFTPClient | None = None
        self._ssh: paramiko.SSHClient | None = None

    def describe(self) -> str:
        where = (
            f"via conn {self.config.conn_id}"
            if self.config.conn_id
            else f"on {self.config.username}@{self.config.host}:{self.config.port}"
        )
        return f"sftp {posixpath.join(self.folder, self.pattern)} ({self.select}) {where}"

    # Connection -----------------------------------------------------------------------------

    def _open(self) -> None:
        super()._open()
        given = self._given
        if given is None:
            self._client = self._connect()
            return
        if callable(given) and not hasattr(given, "listdir_attr"):
            try:
                self._client = given()
            except Exception as err:
                raise connection_error(self.describe(), err) from None
        else:
            self._client = given

    def _close(self) -> None:
        try:
            if self._ssh is not None:
                self._ssh.close()
        finally:
            self._ssh = None
            self._client = None
            super()._close()

    def _connect(self) -> paramiko.SFTPClient:
        import paramiko

        config = self.config
        assert config.host is not None
        ssh = paramiko.SSHClient()
        entry = config.host if config.port == 22 else f"[{config.host}]:{config.port}"
        if config.host_key:
            key = parse_host_key(config.host_key, self.describe())
            ssh.get_host_keys().add(entry, key.get_name(), key)
        else:
            known = Path(config.known_hosts or "~/.ssh/known_hosts").expanduser()
            if config.known_hosts and not known.is_file():
                raise ConfigError(f"{self.describe()}: known_hosts file {known} does not exist")
            if known.is_file():
                ssh.load_host_keys(str(known))
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())

        password = None
        if config.password_env:
            password = os.environ.get(config.password_env)
            if password is None:
                raise ConfigError(
                    f"{self.describe()}: environment variable {config.password_env} is not set; "
                    "it must hold the SFTP password"
                )
        try:
            ssh.connect(
                config.host,
                port=config.port,
                username=config.username,
                password=password,
                key_filename=str(Path(config.key_file).expanduser()) if config.key_file else None,
                look_for_keys=False,
                allow_agent=False,
                timeout=config.timeout,
                banner_timeout=config.timeout,
                auth_timeout=config.timeout,
            )
            client = ssh.open_sftp()
        except Exception as err:
            ssh.close()
            raise connection_error(self.describe(), err, password=password) from None
        self._ssh = ssh
        return client

    # Files ----------------------------------------------------------------------------------

    def _sftp(self) -> paramiko.SFTPClient:
        if self._client is None:
            raise SourceError(f"{self.describe()}: the source is not open; use it in a with block")
        return self._client

    def _list(self) -> list[Listed]:
        try:
            items = self._sftp().listdir_attr(self.folder)
        except FileNotFoundError:
            raise SourceError(
                f"{self.describe()}: folder {self.folder} does not exist on the server"
            ) from None
        except PermissionError:
            raise SourceError(
                f"{self.describe()}: no permission to list folder {self.folder}"
            ) from None
        except OSError as err:
            raise SourceError(
                f"{self.describe()}: cannot list folder {self.folder} ({err})"
            ) from None
        return [
            Listed(
                item.filename,
                posixpath.join(self.folder, item.filename),
                int(item.st_size or 0),
                float(item.st_mtime or 0),
            )
            for item in items
            if item.st_mode is not None and stat.S_ISREG(item.st_mode)
        ]

    def _stat(self, entry: Listed) -> tuple[int, float] | None:
        try:
            item = self._sftp().stat(entry.path)
        except FileNotFoundError:
            return None
        return int(item.st_size or 0), float(item.st_mtime or 0)

    def _fetch(self, entry: Listed, work_dir: Path) -> tuple[Path, str]:
        limit = self.config.max_bytes
        if entry.size > limit:
            raise SourceError(
                f"{entry.name}: {entry.size:,} bytes is more than max_bytes ({limit:,}); raise "
                "max_bytes if files this large are expected"
            )
        local = work_dir / f"{len(list(work_dir.iterdir()))}-{entry.name}"
        digest = hashlib.sha256()
        total = 0
        try:
            with self._sftp().open(entry.path, "rb") as remote, local.open("wb") as out:
                remote.prefetch(entry.size)
                while block := remote.read(_BLOCK):
                    total += len(block)
                    if total > limit:
                        raise SourceError(
                            f"{entry.name}: grew past max_bytes ({limit:,}) while downloading"
                        )
                    digest.update(block)
                    out.write(block)
        except PermissionError:
            raise SourceError(f"{entry.name}: no permission to read {entry.path}") from None
        except OSError as err:
            raise SourceError(f"{entry.name}: download failed ({err})") from None
        return local, digest.hexdigest()

    def _move(self, entry: Listed, folder: str) -> str:
        sftp = self._sftp()
        try:
            try:
                sftp.stat(folder)
            except FileNotFoundError:
                sftp.mkdir(folder)
            target = posixpath.join(folder, archive_name(entry.name, set(sftp.listdir(folder))))
            try:
                sftp.posix_rename(entry.path, target)
            except OSError:
                sftp.rename(entry.path, target)
        except OSError as err:
            raise SourceError(
                f"{entry.name}: cannot move it to the archive folder {folder} ({err})"
            ) from None
        return target


def parse_host_key(text: str, where: str) -> paramiko.PKey:
    """Turn ``"ssh-ed25519 AAAA..."`` (a known_hosts or .pub line) into a paramiko key."""
    import paramiko
    from paramiko.pkey import UnknownKeyType

    parts = text.split()
    if parts and not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        parts = parts[1:]  # a known_hosts line starts with the host names
    if len(parts) < 2:
        raise ConfigError(
            f"{where}: host_key must look like 'ssh-ed25519 AAAA...' (key type, then key data)"
        )
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except (binascii.Error, ValueError, paramiko.SSHException, UnknownKeyType) as err:
        raise ConfigError(f"{where}: host_key cannot be read ({err})") from None


def connection_error(where: str, err: BaseException, *, password: str | None = None) -> SourceError:
    """A SourceError saying why an SSH connection failed, without any secret in it."""
    import paramiko

    if isinstance(err, paramiko.BadHostKeyException):
        got = err.key
        message = (
            f"the server's host key does not match the known one (it offered {got.get_name()} "
            f"SHA256:{_fingerprint(got)}); if the partner really changed it, confirm the new "
            "key with them and update host_key or known_hosts"
        )
    elif isinstance(err, paramiko.AuthenticationException):
        message = f"authentication failed ({_text(err, password)}); check the user, key or password"
    elif isinstance(err, paramiko.SSHException) and "not found in known_hosts" in str(err):
        message = (
            "the server's host key is not known; give it as host_key (the 'ssh-ed25519 AAAA...' "
            "line the partner sends) or add it to known_hosts"
        )
    elif isinstance(err, socket.timeout | TimeoutError):
        message = "the server did not answer in time"
    elif isinstance(err, OSError | paramiko.SSHException):
        message = f"cannot reach the server ({_text(err, password)})"
    else:
        message = f"the connection failed ({type(err).__name__}: {_text(err, password)})"
    return SourceError(f"{where}: {message}")


def _fingerprint(key: Any) -> str:
    return base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _text(err: BaseException, password: str | None) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.replace(password, "***") if password else text
