"""The exact-key levels' backends: in this process by default, or in Redis when cache replicas share state.

Both keep the same contract: a byte bound per level with GDSF eviction (expired entries first),
TTLs, whole-entry replacement and invalidation by model version. With Redis, invalidations are
also broadcast to every replica, whose semantic level (L1) lives in its own process. No gRPC
here; Redis errors and timeouts surface as ``BackendUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.cache.eviction import MIN_COST
from services.cache.semantic import SemanticLevel
from services.cache.store import EntryTooLarge, LevelStore, StoredEntry, entry_size

LOG = logging.getLogger(__name__)
# The pause before a broken subscription to the broadcast invalidations is tried again.
RESUBSCRIBE_PAUSE_SECONDS = 1.0


class BackendUnavailable(RuntimeError):
    """The shared backend did not answer in time or failed."""


@dataclass(frozen=True)
class LevelSnapshot:
    """A level's counters and occupancy at one moment."""

    hits: int
    misses: int
    entries: int
    bytes: int
    max_bytes: int
    evictions: int
    removals: int
    compute_saved: float


class ExactLevel(Protocol):
    """One exact-key level, wherever it keeps its entries."""

    max_bytes: int

    async def get(self, key: str) -> StoredEntry | None:
        """Returns the live entry under ``key``, counting a hit or a miss."""

    async def put(
        self, key: str, value: bytes, *, produced_by: tuple[tuple[str, int], ...], compute_cost: float, ttl_seconds: float | None
    ) -> int:
        """Stores an entry whole; returns how many entries were evicted. Raises EntryTooLarge."""

    async def invalidate(self, model_name: str, model_version: int) -> int:
        """Removes what the model (one version, or any when 0) produced; returns how many entries."""

    async def snapshot(self) -> LevelSnapshot:
        """Returns the level's counters."""


class LocalLevel:
    """An exact-key level in this process's memory."""

    def __init__(self, max_bytes: int, default_ttl_seconds: float) -> None:
        self.store = LevelStore(max_bytes=max_bytes, default_ttl_seconds=default_ttl_seconds)
        self.max_bytes = max_bytes

    async def get(self, key: str) -> StoredEntry | None:
        return self.store.get(key)

    async def put(
        self, key: str, value: bytes, *, produced_by: tuple[tuple[str, int], ...], compute_cost: float, ttl_seconds: float | None
    ) -> int:
        return self.store.put(key, value, produced_by=produced_by, compute_cost=compute_cost, ttl_seconds=ttl_seconds)

    async def invalidate(self, model_name: str, model_version: int) -> int:
        return self.store.invalidate(model_name, model_version)

    async def snapshot(self) -> LevelSnapshot:
        c = self.store.counters
        return LevelSnapshot(
            c.hits, c.misses, self.store.entries, self.store.bytes_used, self.max_bytes, c.evictions, c.removals, c.compute_saved
        )


# produced_by travels as "name\x1fversion" items joined by "\x1e": model names never hold
# control characters (Triton's repository rejects them).
_ITEM, _FIELD = "\x1e", "\x1f"

# Each script runs atomically in Redis, so replicas never see a half-stored entry or a byte count
# that disagrees with the entries. Keys hang off a per-level prefix p: p.."e:"..key (the entry's
# hash), p.."prio" (GDSF priorities), p.."exp" (expiry times), p.."m:"..model (keys per model),
# p.."meta" (bytes, GDSF clock and counters).
_REMOVE = """
local function remove(p, k)
  local ek = p .. 'e:' .. k
  local fields = redis.call('HMGET', ek, 's', 'pb')
  if fields[1] then
    for item in string.gmatch(fields[2], '[^\\30]+') do
      redis.call('SREM', p .. 'm:' .. string.match(item, '^[^\\31]*'), k)
    end
    redis.call('DEL', ek)
    redis.call('HINCRBY', p .. 'meta', 'bytes', -tonumber(fields[1]))
  end
  redis.call('ZREM', p .. 'prio', k)
  redis.call('ZREM', p .. 'exp', k)
end
"""

_PUT = _REMOVE + """
local p, k, value, pb = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cost, expires, size, now, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
remove(p, k)
local removals = 0
for _, due in ipairs(redis.call('ZRANGEBYSCORE', p .. 'exp', '-inf', now)) do
  remove(p, due)
  removals = removals + 1
end
local evicted = 0
while tonumber(redis.call('HGET', p .. 'meta', 'bytes') or '0') + size > max_bytes do
  local victim = redis.call('ZPOPMIN', p .. 'prio')
  if #victim == 0 then break end
  redis.call('HSET', p .. 'meta', 'clock', victim[2])
  remove(p, victim[1])
  evicted = evicted + 1
end
local clock = tonumber(redis.call('HGET', p .. 'meta', 'clock') or '0')
redis.call('HSET', p .. 'e:' .. k, 'v', value, 'pb', pb, 'c', cost, 'x', expires, 's', size, 'f', 1)
redis.call('ZADD', p .. 'prio', clock + math.max(cost, tonumber(ARGV[10])) / size, k)
redis.call('ZADD', p .. 'exp', expires, k)
for item in string.gmatch(pb, '[^\\30]+') do
  redis.call('SADD', p .. 'm:' .. string.match(item, '^[^\\31]*'), k)
end
redis.call('HINCRBY', p .. 'meta', 'bytes', size)
redis.call('HINCRBY', p .. 'meta', 'evictions', evicted)
redis.call('HINCRBY', p .. 'meta', 'removals', removals)
return evicted
"""

_GET = _REMOVE + """
local p, k, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ek = p .. 'e:' .. k
local e = redis.call('HMGET', ek, 'v', 'pb', 'c', 'x', 's', 'f')
if not e[1] then
  redis.call('HINCRBY', p .. 'meta', 'misses', 1)
  return false
end
if tonumber(e[4]) <= now then
  remove(p, k)
  redis.call('HINCRBY', p .. 'meta', 'removals', 1)
  redis.call('HINCRBY', p .. 'meta', 'misses', 1)
  return false
end
local frequency = tonumber(e[6]) + 1
redis.call('HSET', ek, 'f', frequency)
local clock = tonumber(redis.call('HGET', p .. 'meta', 'clock') or '0')
redis.call('ZADD', p .. 'prio', clock + frequency * math.max(tonumber(e[3]), tonumber(ARGV[4])) / tonumber(e[5]), k)
redis.call('HINCRBY', p .. 'meta', 'hits', 1)
redis.call('HINCRBYFLOAT', p .. 'meta', 'saved', e[3])
return {e[1], e[2], e[3], e[4]}
"""

_INVALIDATE = _REMOVE + """
local p, name, version = ARGV[1], ARGV[2], ARGV[3]
local removed = 0
for _, k in ipairs(redis.call('SMEMBERS', p .. 'm:' .. name)) do
  local pb = redis.call('HGET', p .. 'e:' .. k, 'pb') or ''
  local match = false
  for item in string.gmatch(pb, '[^\\30]+') do
    local n, v = string.match(item, '^([^\\31]*)\\31(.*)$')
    if n == name and (version == '0' or v == version) then match = true end
  end
  if match then
    remove(p, k)
    removed = removed + 1
  end
end
redis.call('HINCRBY', p .. 'meta', 'removals', removed)
return removed
"""


def _encode_produced_by(produced_by: tuple[tuple[str, int], ...]) -> str:
    return _ITEM.join(f"{name}{_FIELD}{version}" for name, version in produced_by)


def _decode_produced_by(encoded: str) -> tuple[tuple[str, int], ...]:
    pairs = []
    for item in encoded.split(_ITEM):
        if item:
            name, version = item.split(_FIELD)
            pairs.append((name, int(version)))
    return tuple(pairs)


class RedisLevel:
    """An exact-key level kept in Redis and shared by every cache replica that names the same prefix.

    Times are wall-clock seconds (replicas on different hosts share them); every call is bounded
    by the client's socket timeout.
    """

    def __init__(self, client: aioredis.Redis, prefix: str, max_bytes: int, default_ttl_seconds: float) -> None:
        self._client = client
        self._prefix = prefix
        self.max_bytes = max_bytes
        self._default_ttl = default_ttl_seconds
        self._put = client.register_script(_PUT)
        self._get = client.register_script(_GET)
        self._invalidate = client.register_script(_INVALIDATE)

    async def get(self, key: str) -> StoredEntry | None:
        try:
            found = await self._get(args=[self._prefix, key, time.time(), MIN_COST])
        except RedisError as error:
            raise BackendUnavailable(f"redis lookup failed: {error}") from None
        if not found:
            return None
        value, produced_by, cost, expires_at = found
        return StoredEntry(value, _decode_produced_by(produced_by.decode()), float(cost), float(expires_at))

    async def put(
        self, key: str, value: bytes, *, produced_by: tuple[tuple[str, int], ...], compute_cost: float, ttl_seconds: float | None
    ) -> int:
        size = entry_size(key, value, produced_by)
        if size > self.max_bytes:
            raise EntryTooLarge(f"entry of {size} bytes exceeds the level's bound of {self.max_bytes} bytes")
        now = time.time()
        expires_at = now + (ttl_seconds or self._default_ttl)
        args = [self._prefix, key, value, _encode_produced_by(produced_by), compute_cost, expires_at, size, now, self.max_bytes, MIN_COST]
        try:
            return int(await self._put(args=args))
        except RedisError as error:
            raise BackendUnavailable(f"redis store failed: {error}") from None

    async def invalidate(self, model_name: str, model_version: int) -> int:
        try:
            return int(await self._invalidate(args=[self._prefix, model_name, model_version]))
        except RedisError as error:
            raise BackendUnavailable(f"redis invalidation failed: {error}") from None

    async def snapshot(self) -> LevelSnapshot:
        try:
            meta = await self._client.hgetall(self._prefix + "meta")
            entries = await self._client.zcard(self._prefix + "prio")
        except RedisError as error:
            raise BackendUnavailable(f"redis statistics failed: {error}") from None

        def count(name: bytes) -> int:
            return int(meta.get(name, 0))

        return LevelSnapshot(
            count(b"hits"),
            count(b"misses"),
            entries,
            count(b"bytes"),
            self.max_bytes,
            count(b"evictions"),
            count(b"removals"),
            float(meta.get(b"saved", 0.0)),
        )


@dataclass
class _Confirmations:
    """The replicas' confirmations of one broadcast invalidation, and the entries they removed."""

    expected: int | None = None
    received: int = 0
    removed: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def confirm(self, removed: int) -> None:
        self.received += 1
        self.removed += removed
        self._settle()

    def expect(self, replicas: int) -> None:
        self.expected = replicas
        self._settle()

    def _settle(self) -> None:
        if self.expected is not None and self.received >= self.expected:
            self.done.set()


class InvalidationBroadcast:
    """Carries invalidations to every cache replica that shares a Redis prefix, for their in-process semantic levels.

    Each replica subscribes to the prefix's invalidation channel. An invalidation is published
    there, and every subscriber (the publisher too) drops the model's entries from its level and
    confirms on a second channel; ``invalidate`` returns once as many replicas confirmed as Redis
    delivered the message to, so that afterwards no replica serves those entries. A replica whose
    subscription breaks may miss invalidations meanwhile: its level serves nothing until it has
    subscribed again, and then starts empty.
    """

    def __init__(
        self,
        commands: aioredis.Redis,
        subscriptions: aioredis.Redis,
        prefix: str,
        level: SemanticLevel,
        *,
        confirm_timeout_seconds: float,
    ) -> None:
        self._commands = commands
        self._subscriptions = subscriptions
        self._channel = f"{prefix}invalidations"
        self._confirmations_channel = f"{prefix}invalidation-confirmations"
        self._level = level
        self._confirm_timeout = confirm_timeout_seconds
        self._waiting: dict[str, _Confirmations] = {}
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout_seconds: float) -> None:
        """Subscribes in the background, waiting up to ``timeout_seconds`` for the first subscription."""
        self._level.suspended = True
        self._task = asyncio.create_task(self._follow(), name="cache-invalidations")
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout_seconds)
        except TimeoutError:
            LOG.warning("not subscribed to %s yet; the semantic level serves nothing until it is", self._channel)

    async def close(self) -> None:
        """Stops following the broadcast."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def invalidate(self, model_name: str, model_version: int) -> int:
        """Has every replica drop the model's (version's) entries from its level; returns how many they removed.

        Raises BackendUnavailable when the broadcast cannot be published, or when fewer replicas
        than received it confirm within the timeout (it is safe to repeat).
        """
        invalidation_id = uuid.uuid4().hex
        confirmations = self._waiting[invalidation_id] = _Confirmations()
        message = json.dumps({"id": invalidation_id, "model_name": model_name, "model_version": model_version})
        try:
            try:
                confirmations.expect(int(await self._commands.publish(self._channel, message)))
            except RedisError as error:
                raise BackendUnavailable(f"redis invalidation broadcast failed: {error}") from None
            try:
                await asyncio.wait_for(confirmations.done.wait(), self._confirm_timeout)
            except TimeoutError:
                raise BackendUnavailable(
                    f"only {confirmations.received} of {confirmations.expected} cache replicas confirmed the invalidation "
                    f"within {self._confirm_timeout} s; the others may still serve the entries from their semantic level"
                ) from None
        finally:
            del self._waiting[invalidation_id]
        return confirmations.removed

    async def _follow(self) -> None:
        """Applies the broadcast invalidations to this replica's level until cancelled, subscribing again after a failure."""
        while True:
            pubsub = self._subscriptions.pubsub()
            try:
                await pubsub.subscribe(self._channel, self._confirmations_channel)
                async for message in pubsub.listen():
                    await self._handle(message)
            except (RedisError, OSError) as error:
                LOG.warning("subscription to %s broke (%s); the semantic level serves nothing until it is back", self._channel, error)
            finally:
                self._level.suspended = True
                self._subscribed.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(RESUBSCRIBE_PAUSE_SECONDS)

    async def _handle(self, message: dict) -> None:
        kind, channel = message["type"], message["channel"].decode()
        if kind == "subscribe":
            if channel == self._channel:
                # Whatever was invalidated before this moment may have been missed.
                self._level.clear()
                self._level.suspended = False
                self._subscribed.set()
            return
        if kind != "message":
            return
        try:
            body = json.loads(message["data"])
            if channel == self._channel:
                removed = self._level.invalidate(str(body["model_name"]), int(body["model_version"]))
                await self._confirm(str(body["id"]), removed)
            elif channel == self._confirmations_channel and body["id"] in self._waiting:
                self._waiting[body["id"]].confirm(int(body["removed"]))
        except (ValueError, KeyError, TypeError) as error:
            LOG.warning("ignoring a malformed message on %s: %s", channel, error)

    async def _confirm(self, invalidation_id: str, removed: int) -> None:
        try:
            await self._commands.publish(self._confirmations_channel, json.dumps({"id": invalidation_id, "removed": removed}))
        except RedisError as error:
            # The invalidation is applied here; its publisher will report the missing confirmation.
            LOG.warning("could not confirm invalidation %s: %s", invalidation_id, error)
