#!/usr/bin/env bash
# Makes sure the local PostgreSQL and MariaDB the tests use are running; starts them when they
# are installed but stopped and we are allowed to. Prints what it did; never fails the run by
# itself (a test that needs a missing service says so, and fails under CI=true).
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432 && command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "services: starting PostgreSQL"
    for version in /etc/postgresql/*; do
        pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start || true
    done
fi
if ! port_open 3306 && [ -x /usr/sbin/mariadbd ] && [ "$(id -u)" = "0" ]; then
    echo "services: starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
    for _ in $(seq 1 30); do port_open 3306 && break; sleep 0.5; done
fi
for pair in "PostgreSQL:5432" "MariaDB:3306"; do
    port_open "${pair#*:}" || echo "services: ${pair%%:*} is not reachable on 127.0.0.1:${pair#*:}" >&2
done
exit 0
