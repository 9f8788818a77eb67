"""A throwaway redis-server on a free loopback port, for the cache's shared-backend tests and benchmarks."""

from __future__ import annotations

import pathlib
import subprocess
import time

import redis

from inferscale.suite import free_port


class RedisServer:
    """Starts redis-server with no persistence in ``workdir``; ``url`` reaches it."""

    def __init__(self, binary: str, workdir: pathlib.Path) -> None:
        self._binary = binary
        self._workdir = workdir
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_seconds: float = 10.0) -> RedisServer:
        """Starts the server (again, after a kill, on the same port) and waits until it answers PING."""
        self._process = subprocess.Popen(
            [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self._workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_seconds
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        while True:
            try:
                client.ping()
                return self
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """Kills the server at once, as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        """Stops the server."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None
