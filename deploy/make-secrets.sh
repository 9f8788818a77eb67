#!/usr/bin/env bash
# Writes the suite's secrets for Docker Compose into a folder (default: deploy/), keeping any that
# exist: .env (the services' token, Triton's repository key, the admin token), which Compose reads
# for the variables of compose.cpu.yaml and compose.yaml, and client-tokens, the routers' clients
# ("<client id> <token>" a line). The services refuse to start without them (docs/security.md).
#
#   deploy/make-secrets.sh [FOLDER]
set -euo pipefail
folder=${1:-$(dirname "$0")}
mkdir -p "$folder"
umask 077

token() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

if [ ! -e "$folder/.env" ]; then
    {
        echo "INFERSCALE_SERVICE_TOKEN=$(token)"
        echo "INFERSCALE_TRITON_REPOSITORY_KEY=$(token)"
        echo "INFERSCALE_ADMIN_TOKEN=$(token)"
        echo "INFERSCALE_CLIENT_TOKENS=$(cd "$folder" && pwd)/client-tokens"
    } >"$folder/.env"
    echo "wrote $folder/.env"
fi
if [ ! -e "$folder/client-tokens" ]; then
    echo "client $(token)" >"$folder/client-tokens"
    # The routers run as uid 10001 and read the file through a bind mount.
    chown 10001:10001 "$folder/client-tokens" 2>/dev/null || chmod 0644 "$folder/client-tokens"
    echo "wrote $folder/client-tokens (a client's token: the second word of its line)"
fi
