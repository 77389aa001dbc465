"""A real OpenSSH server on a free loopback port, with a throw-away user, for the SFTP tests."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.harness.services import free_port, port_open, unavailable

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class SshServer:
    """What a test needs to reach the server: address, credentials and the host key."""

    host: str
    port: int
    username: str
    password: str
    private_key_path: Path
    public_key: str
    host_public_key: str
    known_hosts_path: Path
    upload_dir: Path
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _run(*args: str, input_text: str | None = None) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, input=input_text)


def start_sshd() -> Iterator[SshServer]:
    """Start sshd with a fresh host key and user; yield its details; remove all of it after."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        unavailable("OpenSSH server", f"{SSHD} or ssh-keygen is missing (make test installs them)")
    if os.geteuid() != 0:
        unavailable("OpenSSH server", "the sshd fixture must run as root to create its user")

    home = Path(tempfile.mkdtemp(prefix="grip-sshd-"))
    home.chmod(0o755)
    username = f"gripsftp{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    port = free_port()
    host_key = home / "ssh_host_ed25519_key"
    user_key = home / "id_ed25519"
    upload = home / "upload"
    log_path = home / "sshd.log"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(user_key))
    authorized = home / "authorized_keys"
    shutil.copy(user_key.with_suffix(".pub"), authorized)
    authorized.chmod(0o644)

    _run("useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", username)
    try:
        _run("chpasswd", input_text=f"{username}:{password}\n")
        upload.mkdir()
        shutil.chown(upload, user=username)
        upload.chmod(0o777)
        config = home / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"PidFile {home / 'sshd.pid'}\nAuthorizedKeysFile {authorized}\n"
            "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nPermitRootLogin no\nSubsystem sftp internal-sftp\n"
            f"AllowUsers {username}\nLogLevel VERBOSE\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + 15
            while not port_open("127.0.0.1", port, timeout=0.2):
                if process.poll() is not None or time.monotonic() > deadline:
                    unavailable("OpenSSH server", f"sshd did not start: {log_path.read_text()}")
                time.sleep(0.05)
            host_public = host_key.with_suffix(".pub").read_text().split()
            host_line = f"{host_public[0]} {host_public[1]}"
            known_hosts = home / "known_hosts"
            known_hosts.write_text(f"[127.0.0.1]:{port} {host_line}\n")
            yield SshServer(
                host="127.0.0.1",
                port=port,
                username=username,
                password=password,
                private_key_path=user_key,
                public_key=user_key.with_suffix(".pub").read_text().strip(),
                host_public_key=host_line,
                known_hosts_path=known_hosts,
                upload_dir=upload,
                log_path=log_path,
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    finally:
        subprocess.run(["userdel", username], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
