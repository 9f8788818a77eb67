#!/usr/bin/env bash
# Starts a Docker engine when none answers, as these machines allow one: no iptables and no
# bridge, so every container runs on the host's network (compose.cpu.yaml asks for nothing else).
# Called by `make docker-engine` (and so by `make test`); needs root and Debian's docker.io, which
# `make system-packages` installs. Returns once `docker info` answers.
set -euo pipefail

if docker info >/dev/null 2>&1; then
    exit 0
fi
log=/var/log/inferscale-dockerd.log
echo "starting dockerd (log: $log)"
nohup dockerd --iptables=false --bridge=none >>"$log" 2>&1 &
for _ in $(seq 1 120); do
    if docker info >/dev/null 2>&1; then
        echo "dockerd answers"
        exit 0
    fi
    if ! kill -0 $! 2>/dev/null; then
        echo "dockerd exited:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    sleep 0.5
done
echo "dockerd did not answer within 60 s:" >&2
tail -20 "$log" >&2
exit 1
