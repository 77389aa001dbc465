#!/usr/bin/env bash
# Creates or reuses .venv, installs the pinned requirements when they changed, installs the
# system packages the tests need when they are missing. Safe to run again and again.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
venv="$root/.venv"
stamp="$venv/.requirements.sha256"

want_system_packages() {
    [ "${GRIP_SKIP_SYSTEM_PACKAGES:-}" = "1" ] && return 0
    local missing=()
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != "0" ]; then
        echo "bootstrap: missing system packages: ${missing[*]} (install them as root; SFTP tests skip without them)" >&2
        return 0
    fi
    echo "bootstrap: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

want_venv() {
    if [ ! -x "$venv/bin/python" ]; then
        echo "bootstrap: creating $venv"
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --upgrade pip
    fi
    local sum
    sum=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
        echo "bootstrap: installing pinned requirements into .venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r requirements.txt -r requirements-dev.txt
        echo "$sum" > "$stamp"
    fi
    # The library lives in plugins/ (where Airflow finds it) and the sandbox at the top level:
    # a .pth file makes both importable from the venv without installing them.
    local site
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    printf '%s\n%s\n' "$root/plugins" "$root" > "$site/grip_sync.pth"
}

want_system_packages
want_venv
