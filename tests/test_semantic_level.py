"""The semantic level: nearest-neighbour lookups by cosine similarity, namespaces, bounds and invalidation."""

from __future__ import annotations

import numpy as np
import pytest

from services.cache.semantic import InvalidEmbedding, SemanticLevel, normalised
from services.cache.store import EntryTooLarge

RNG = np.random.default_rng(7)


def unit(dimensions: int = 32) -> np.ndarray:
    vector = RNG.standard_normal(dimensions).astype(np.float32)
    return vector / np.linalg.norm(vector)


def near(vector: np.ndarray, similarity: float) -> np.ndarray:
    """A vector at exactly ``similarity`` cosine from ``vector``."""
    other = RNG.standard_normal(vector.size).astype(np.float32)
    other -= other.dot(vector) * vector
    other /= np.linalg.norm(other)
    return similarity * vector + np.sqrt(1 - similarity**2) * other


def test_a_neighbour_above_the_threshold_is_served_with_its_similarity() -> None:
    level = SemanticLevel(max_bytes=1 << 20, default_ttl_seconds=60)
    anchor = unit()
    level.store("digits", anchor, b"seven", produced_by=(("m", 1),), compute_cost=3.0)
    hit = level.lookup("digits", near(anchor, 0.9), threshold=0.85)
    assert hit is not None and hit.entry.value == b"seven"
    assert hit.similarity == pytest.approx(0.9, abs=2e-3)
    assert (level.counters.hits, level.counters.compute_saved) == (1, 3.0)


def test_a_neighbour_below_the_threshold_is_a_miss() -> None:
    level = SemanticLevel(max_bytes=1 << 20, default_ttl_seconds=60)
    anchor = unit()
    level.store("digits", anchor, b"seven")
    assert level.lookup("digits", near(anchor, 0.8), threshold=0.85) is None
    assert level.counters.misses == 1


def test_the_nearest_of_several_entries_answers() -> None:
    level = SemanticLevel(max_bytes=1 << 22, default_ttl_seconds=60)
    vectors = [unit() for _ in range(200)]
    for index, vector in enumerate(vectors):
        level.store("t", vector, str(index).encode())
    for index in (0, 57, 199):
        hit = level.lookup("t", near(vectors[index], 0.97), threshold=0.9)
        assert hit is not None and hit.entry.value == str(index).encode()


def test_namespaces_never_serve_each_other() -> None:
    level = SemanticLevel(max_bytes=1 << 20, default_ttl_seconds=60)
    anchor = unit()
    level.store("digits|linear:1", anchor, b"a")
    assert level.lookup("digits|linear:2", anchor, threshold=0.5) is None
    assert level.lookup("intents|x:1", anchor, threshold=0.5) is None
    assert level.lookup("digits|linear:1", anchor, threshold=0.5) is not None


@pytest.mark.parametrize(
    ("embedding", "message"),
    [
        (np.zeros(32, np.float32), "all zeros"),
        (np.full(32, np.nan, np.float32), "NaN"),
        (np.ones(16, np.float32), "16 dimensions but this namespace holds 32"),
        (np.ones(5000, np.float32), "5000 dimensions"),
    ],
)
def test_a_malformed_embedding_is_refused_and_nothing_else_changes(embedding: np.ndarray, message: str) -> None:
    level = SemanticLevel(max_bytes=1 << 20, default_ttl_seconds=60)
    anchor = unit()
    level.store("t", anchor, b"kept")
    with pytest.raises(InvalidEmbedding, match=message):
        level.store("t", embedding, b"bad")
    with pytest.raises(InvalidEmbedding, match=message):
        level.lookup("t", embedding, threshold=0.5)
    assert level.entries == 1
    assert level.lookup("t", anchor, threshold=0.99).entry.value == b"kept"


def test_the_byte_bound_holds_and_the_least_valuable_entry_goes() -> None:
    level = SemanticLevel(max_bytes=1 << 20, default_ttl_seconds=60)
    anchor = unit()
    level.store("t", anchor, b"x" * 1000, compute_cost=1.0)
    entry_bytes = level.bytes_used
    level = SemanticLevel(max_bytes=3 * entry_bytes + 10, default_ttl_seconds=60)
    vectors = [unit() for _ in range(3)]
    for vector, cost in zip(vectors, (22.0, 1.0, 5.0), strict=True):
        level.store("t", vector, b"x" * 1000, compute_cost=cost)
    assert level.store("t", unit(), b"x" * 1000, compute_cost=1.0) == 1
    assert level.bytes_used <= level.max_bytes
    assert level.lookup("t", vectors[1], threshold=0.99) is None
    assert level.lookup("t", vectors[0], threshold=0.99) is not None
    with pytest.raises(EntryTooLarge):
        level.store("t", unit(), b"x" * (4 * entry_bytes))


def test_invalidation_and_expiry_remove_entries_from_the_index() -> None:
    now = [0.0]
    level = SemanticLevel(max_bytes=1 << 20, default_ttl_seconds=10, clock=lambda: now[0])
    old, new, short = unit(), unit(), unit()
    level.store("t", old, b"old", produced_by=(("m", 1),))
    level.store("t", new, b"new", produced_by=(("m", 2),))
    level.store("t", short, b"short", ttl_seconds=1)
    assert level.invalidate("m", 1) == 1
    assert level.lookup("t", old, threshold=0.99) is None
    assert level.lookup("t", new, threshold=0.99) is not None
    now[0] = 2
    assert level.lookup("t", short, threshold=0.99) is None
    assert level.entries == 1


def test_normalised_returns_a_unit_vector() -> None:
    assert np.linalg.norm(normalised(np.array([3.0, 4.0]))) == pytest.approx(1.0)


def test_a_bulk_load_is_searchable_and_counted_within_the_bound() -> None:
    level = SemanticLevel(max_bytes=1 << 22, default_ttl_seconds=60)
    vectors = np.stack([unit() for _ in range(300)])
    level.store_many("bulk", vectors, [str(i).encode() for i in range(300)], compute_cost=2.0, threads=2)
    assert level.entries == 300 and 0 < level.bytes_used <= level.max_bytes
    assert level.lookup("bulk", near(vectors[123], 0.98), threshold=0.9).entry.value == b"123"
    with pytest.raises(EntryTooLarge):
        SemanticLevel(max_bytes=10_000, default_ttl_seconds=60).store_many("bulk", vectors, [b"v"] * 300)


def test_the_models_an_entry_names_count_against_the_byte_bound() -> None:
    names = tuple((letter * 256, 1) for letter in "abc")
    level = SemanticLevel(max_bytes=1 << 20, default_ttl_seconds=60)
    level.store("t", unit(), b"v")
    unnamed = level.bytes_used
    level.store("t", unit(), b"v", produced_by=names)
    assert level.bytes_used - 2 * unnamed >= 3 * 256
    level = SemanticLevel(max_bytes=20 * unnamed, default_ttl_seconds=60)
    for _ in range(400):
        level.store("t", unit(), b"v", produced_by=names)
    assert level.entries * 3 * 256 <= level.bytes_used <= level.max_bytes
    kept = level.entries
    assert level.invalidate("a" * 256) == kept
    assert level.entries == level.bytes_used == 0
