"""The embedded Triton's start-up: an abort of the python backend's known kind, or a server up but
never ready, is retried; a server that exits on its own is not.

The tritonserver stand-ins are real processes (a shell that aborts itself, or one that stays up),
so that the launcher's handling of exit codes, logs and process groups is what runs.
"""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from inferscale.triton import launcher
from inferscale.triton.launcher import EmbeddedTriton, TritonSettings, TritonStartError, TritonStartTimeout

ABORT = "terminate called after throwing an instance of 'boost::interprocess::lock_exception'"


def stand_in(tmp_path: pathlib.Path, scripts: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[EmbeddedTriton, list[str]]:
    """A launcher whose successive starts run the given shell scripts instead of tritonserver."""
    server = EmbeddedTriton(TritonSettings(model_repository=tmp_path, log_path=tmp_path / "triton.log"))
    started: list[str] = []
    prefixes: list[str] = []

    def launch() -> None:
        script = scripts[len(started)]
        started.append(script)
        prefixes.append(server._shm_prefix)
        server._log_path = tmp_path / "triton.log"
        with open(server._log_path, "ab") as log:
            server._process = subprocess.Popen(["sh", "-c", script], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def ready(timeout_seconds: float) -> None:
        if server._process is not None:
            try:
                server._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                return  # still up: ready
        raise TritonStartError(f"tritonserver exited with {server._process.returncode}:\n{server.log_tail()}")

    monkeypatch.setattr(server, "_launch", launch)
    monkeypatch.setattr(server, "_wait_ready", ready)
    return server, prefixes


def test_an_abort_of_the_known_kind_is_retried_with_fresh_shared_memory(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    aborting = f"echo \"{ABORT}\"; kill -ABRT $$"
    server, prefixes = stand_in(tmp_path, [aborting, "sleep 30"], monkeypatch)
    assert not server.running
    server.start()
    assert len(prefixes) == 2 and prefixes[0] != prefixes[1]
    assert server.running
    server.kill()
    assert not server.running


def test_the_retries_end_and_other_failures_are_not_retried(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    aborting = f"echo \"{ABORT}\"; kill -ABRT $$"
    server, prefixes = stand_in(tmp_path, [aborting] * 5, monkeypatch)
    with pytest.raises(TritonStartError, match="lock_exception"):
        server.start()
    assert len(prefixes) == launcher._START_ATTEMPTS
    broken, prefixes = stand_in(tmp_path, ["echo 'failed to load model'; exit 1", "sleep 30"], monkeypatch)
    with pytest.raises(TritonStartError, match="failed to load model"):
        broken.start()
    assert len(prefixes) == 1


def test_a_server_up_but_never_ready_is_started_again(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, prefixes = stand_in(tmp_path, ["sleep 30"] * 5, monkeypatch)
    waits = []

    def ready_the_second_time(timeout_seconds: float) -> None:
        waits.append(timeout_seconds)
        if len(waits) == 1:
            server.stop()  # what the real wait does before it gives up
            raise TritonStartTimeout(f"tritonserver not ready after {timeout_seconds} s")

    monkeypatch.setattr(server, "_wait_ready", ready_the_second_time)
    server.start(timeout_seconds=5)
    assert len(prefixes) == 2 and prefixes[0] != prefixes[1]
    server.kill()

    never, prefixes = stand_in(tmp_path, ["sleep 30"] * 5, monkeypatch)

    def never_ready(timeout_seconds: float) -> None:
        never.stop()
        raise TritonStartTimeout(f"tritonserver not ready after {timeout_seconds} s")

    monkeypatch.setattr(never, "_wait_ready", never_ready)
    with pytest.raises(TritonStartTimeout):
        never.start(timeout_seconds=5)
    assert len(prefixes) == launcher._START_ATTEMPTS


class FakeClock:
    """Stands in for the launcher's ``time``: sleeping moves the clock, and each sleep may write a
    line to the server's log, as a model finishing its load would."""

    def __init__(self, log: pathlib.Path, lines_until: float) -> None:
        self.now = 0.0
        self.log = log
        self.lines_until = lines_until

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.now < self.lines_until:
            with self.log.open("a") as log:
                log.write(f"loaded a model at {self.now:.1f}\n")


def waited(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, lines_until: float, timeout: float) -> float:
    """How long (on the fake clock) the real wait lasts for a server that is up, never ready, and
    logs progress until ``lines_until``; it must end in TritonStartTimeout."""
    server = EmbeddedTriton(TritonSettings(model_repository=tmp_path, http_port=9, log_path=tmp_path / "triton.log"))
    server._log_path = tmp_path / "triton.log"
    server._log_path.write_text("")
    server._process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    clock = FakeClock(server._log_path, lines_until)
    monkeypatch.setattr(launcher, "time", clock)
    with pytest.raises(TritonStartTimeout, match="nothing logged"):
        server._wait_ready(timeout)
    return clock.now


def test_a_start_that_keeps_loading_models_is_waited_for_and_a_silent_one_is_not(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Silent from the start: it has hung once the timeout passes.
    assert waited(tmp_path, monkeypatch, lines_until=0, timeout=10) == pytest.approx(10, abs=0.5)
    # Logging for 30 s past a 10 s timeout: waited for, then 10 s of silence end it.
    assert waited(tmp_path, monkeypatch, lines_until=40, timeout=10) == pytest.approx(50, abs=0.5)
    # Logging for ever: the cap ends it.
    assert waited(tmp_path, monkeypatch, lines_until=10_000, timeout=10) == pytest.approx(10 * launcher.START_PROGRESS_CAP, abs=0.5)
