"""Choosing a Triton endpoint: least outstanding requests among the healthy ones, spreading ties."""

from __future__ import annotations

from services.orchestrator.balancing import Endpoint, choose


def test_the_endpoint_with_fewest_requests_in_flight_is_chosen() -> None:
    busy, idle = Endpoint("a", outstanding=3), Endpoint("b", outstanding=1)
    assert choose([busy, idle]) is idle


def test_equally_idle_endpoints_take_turns() -> None:
    endpoints = [Endpoint("a"), Endpoint("b")]
    picked = []
    for _ in range(4):
        endpoint = choose(endpoints)
        assert endpoint is not None
        endpoint.served += 1
        picked.append(endpoint.url)
    assert picked == ["a", "b", "a", "b"]


def test_a_failed_endpoint_is_skipped_while_a_healthy_one_is_left() -> None:
    a, b = Endpoint("a"), Endpoint("b", outstanding=5)
    a.mark_failed("connection refused")
    assert choose([a, b]) is b
    assert (a.failures, a.last_error) == (1, "connection refused")
    a.mark_healthy()
    assert choose([a, b]) is a


def test_a_failed_endpoint_is_still_tried_as_the_last_resort() -> None:
    a, b = Endpoint("a"), Endpoint("b")
    a.mark_failed("down")
    b.mark_failed("down")
    assert choose([a, b]) is a
    assert choose([a, b], frozenset({"a"})) is b


def test_endpoints_already_tried_are_excluded_and_none_left_gives_none() -> None:
    a, b = Endpoint("a"), Endpoint("b")
    assert choose([a, b], frozenset({"a"})) is b
    assert choose([a, b], frozenset({"a", "b"})) is None
