"""The router's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from inferscale.limits import MAX_GENERATED_TOKENS, MAX_SEARCH_CALLS, MAX_TEMPERATURE
from inferscale.settings import (
    DEFAULT_CACHE_PORT,
    DEFAULT_MONITOR_PORT,
    DEFAULT_ORCHESTRATOR_PORT,
    DEFAULT_ROUTER_PORT,
    SettingError,
    env_float,
    env_int,
    env_peer,
    env_str,
    env_switch,
)
from services.router.planning import DEFAULT_SEARCH_CALLS, DEFAULT_SKIP_COMPLEXITY
from services.router.text_task import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, TextDefaults


def _search_max_calls() -> int:
    calls = env_int("INFERSCALE_SEARCH_MAX_CALLS", DEFAULT_SEARCH_CALLS, minimum=1)
    if calls > MAX_SEARCH_CALLS:
        raise SettingError(f"INFERSCALE_SEARCH_MAX_CALLS={calls} exceeds the most a search may make, {MAX_SEARCH_CALLS}")
    return calls


def _text_defaults() -> TextDefaults:
    max_tokens = env_int("INFERSCALE_TEXT_MAX_TOKENS", DEFAULT_MAX_TOKENS, minimum=1)
    if max_tokens > MAX_GENERATED_TOKENS:
        raise SettingError(
            f"INFERSCALE_TEXT_MAX_TOKENS={max_tokens} exceeds the most a generation may produce, {MAX_GENERATED_TOKENS}"
        )
    return TextDefaults(
        max_tokens=max_tokens,
        temperature=env_float("INFERSCALE_TEXT_TEMPERATURE", DEFAULT_TEMPERATURE, low=0.0, high=MAX_TEMPERATURE),
        verifier_model=env_str("INFERSCALE_TEXT_VERIFIER_MODEL", ""),
    )


def _non_finite_policy() -> str:
    policy = env_str("INFERSCALE_NON_FINITE_INPUTS", "reject")
    if policy not in ("reject", "pass"):
        raise SettingError(f"INFERSCALE_NON_FINITE_INPUTS={policy!r} is neither 'reject' nor 'pass'")
    return policy


@dataclass(frozen=True)
class RouterConfig:
    """Where the router listens, whom it calls and its routing defaults."""

    # INFERSCALE_ROUTER_LISTEN: the address the server binds, "host:port".
    listen: str
    # INFERSCALE_ORCHESTRATOR_ADDRESS: the orchestrator, "host:port".
    orchestrator_address: str
    # INFERSCALE_EMBED_ORCHESTRATOR: "on" runs the orchestrator inside the router's process, built
    # from the orchestrator's own settings, instead of calling one at orchestrator_address: one
    # gRPC hop less on every request (docs/hot-path.md).
    embed_orchestrator: bool
    # INFERSCALE_CACHE_ADDRESS: the cache, "host:port"; "off" runs without a cache.
    cache_address: str
    # INFERSCALE_MONITOR_ADDRESS: the monitor, "host:port"; "off" sends no events.
    monitor_address: str
    # INFERSCALE_CONFIDENCE_THRESHOLD: the confidence at which a cascade stops escalating.
    confidence_threshold: float
    # INFERSCALE_ESCALATE_THRESHOLD: the confidence below which a cascade always escalates; between
    # it and the accept threshold the orchestrator weighs complexity and expected gain per cost.
    escalate_threshold: float
    # INFERSCALE_CACHE_TIMEOUT_SECONDS: the longest a cache call may delay a request; past it the
    # router goes on without the cache.
    cache_timeout_seconds: float
    # INFERSCALE_REQUEST_TIMEOUT_SECONDS: the deadline of a plan's execution when the client set none.
    request_timeout_seconds: float
    # INFERSCALE_CATALOG_TTL_SECONDS: how long the router reuses the orchestrator's model list.
    catalog_ttl_seconds: float
    # INFERSCALE_SEMANTIC_VERIFY: "on" runs the plan's cheapest model on a request before a semantic
    # neighbour's answer is served, and serves it only if that model agrees; "off" serves it directly.
    semantic_verify: bool
    # INFERSCALE_SEMANTIC_AUDIT_RATE: the share of served semantic hits for which the plan also
    # runs, after the answer went out, to measure the false-hit rate.
    semantic_audit_rate: float
    # INFERSCALE_POLICY_REFRESH_SECONDS: how often the monitor's published routing policies are read.
    policy_refresh_seconds: float
    # INFERSCALE_EXPLORATION_RATE: the share of cascade requests without thresholds of their own
    # that run every tier, so that feedback on them can teach and check routing policies.
    exploration_rate: float
    # INFERSCALE_ROUTER_MAX_IN_FLIGHT: the most Infer calls served at once; more are refused at
    # once with RESOURCE_EXHAUSTED instead of waiting in an unbounded queue.
    max_in_flight: int
    # INFERSCALE_NON_FINITE_INPUTS: "reject" refuses NaN and infinity in floating-point inputs with
    # INVALID_ARGUMENT before any work; "pass" hands them to the models, for models that accept them.
    finite_inputs: bool
    # INFERSCALE_SHUTDOWN_GRACE_SECONDS: how long calls in flight may finish on SIGTERM.
    shutdown_grace_seconds: float
    # INFERSCALE_SEARCH_MAX_CALLS: the model calls of an adaptive search whose request sets none.
    search_max_calls: int
    # INFERSCALE_SKIP_COMPLEXITY: the complexity score at which a cascade that analyses complexity
    # skips its cheapest tier; 0 never skips.
    skip_complexity: float
    # Text tasks: INFERSCALE_TEXT_MAX_TOKENS (256, at most 2048), the most tokens of a generation
    # whose request sets max_tokens 0; INFERSCALE_TEXT_TEMPERATURE (0.7, in [0, 2]), the temperature
    # of the sampling strategies when the request sets none; INFERSCALE_TEXT_VERIFIER_MODEL (""),
    # the verifier of best-of-N and verifier-confidence cascades, "" for the task's highest tier.
    text: TextDefaults

    @classmethod
    def from_env(cls) -> RouterConfig:
        """Reads the settings; raises SettingError naming a malformed variable."""
        return cls(
            listen=env_str("INFERSCALE_ROUTER_LISTEN", f"[::]:{DEFAULT_ROUTER_PORT}"),
            orchestrator_address=env_str(
                "INFERSCALE_ORCHESTRATOR_ADDRESS", f"127.0.0.1:{DEFAULT_ORCHESTRATOR_PORT}"
            ),
            embed_orchestrator=env_switch("INFERSCALE_EMBED_ORCHESTRATOR", False),
            cache_address=env_peer("INFERSCALE_CACHE_ADDRESS", DEFAULT_CACHE_PORT),
            monitor_address=env_peer("INFERSCALE_MONITOR_ADDRESS", DEFAULT_MONITOR_PORT),
            confidence_threshold=env_float("INFERSCALE_CONFIDENCE_THRESHOLD", 0.90, low=0.0, high=1.0),
            escalate_threshold=env_float("INFERSCALE_ESCALATE_THRESHOLD", 0.70, low=0.0, high=1.0),
            cache_timeout_seconds=env_float("INFERSCALE_CACHE_TIMEOUT_SECONDS", 0.25, low=0.001, high=60),
            request_timeout_seconds=env_float("INFERSCALE_REQUEST_TIMEOUT_SECONDS", 30.0, low=0.01, high=3600),
            catalog_ttl_seconds=env_float("INFERSCALE_CATALOG_TTL_SECONDS", 1.0, low=0.0, high=3600),
            semantic_verify=env_switch("INFERSCALE_SEMANTIC_VERIFY", False),
            semantic_audit_rate=env_float("INFERSCALE_SEMANTIC_AUDIT_RATE", 0.05, low=0.0, high=1.0),
            policy_refresh_seconds=env_float("INFERSCALE_POLICY_REFRESH_SECONDS", 2.0, low=0.05, high=3600),
            exploration_rate=env_float("INFERSCALE_EXPLORATION_RATE", 0.0, low=0.0, high=1.0),
            search_max_calls=_search_max_calls(),
            skip_complexity=env_float("INFERSCALE_SKIP_COMPLEXITY", DEFAULT_SKIP_COMPLEXITY, low=0.0, high=1.0),
            text=_text_defaults(),
            max_in_flight=env_int("INFERSCALE_ROUTER_MAX_IN_FLIGHT", 256, minimum=1),
            finite_inputs=_non_finite_policy() == "reject",
            shutdown_grace_seconds=env_float("INFERSCALE_SHUTDOWN_GRACE_SECONDS", 5.0, low=0, high=600),
        )
