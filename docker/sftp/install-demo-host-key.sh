#!/bin/bash
# Runs in the demo SFTP container just before sshd starts (the image runs every executable file
# in /etc/sftp.d/). It installs the demo host key kept in the repository, so that the host key in
# the demo_sftp connection matches; sshd refuses a key file that others may read, hence the copy.
# The key pair exists for the local demo only: never reuse it for a real server.
set -euo pipefail

install -m 600 -o root -g root /etc/sftp/demo-host-key/ssh_host_ed25519_key \
    /etc/ssh/ssh_host_ed25519_key
install -m 644 -o root -g root /etc/sftp/demo-host-key/ssh_host_ed25519_key.pub \
    /etc/ssh/ssh_host_ed25519_key.pub
echo "demo host key installed: $(ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub)"
