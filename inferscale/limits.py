"""Bounds of a plan that both the router (which plans) and the orchestrator (which runs plans) enforce.

One definition each, so that the two can never disagree; docs/limits.md lists every bound of the suite.
"""

from __future__ import annotations

# The most steps one plan may hold: an ensemble runs every step at once, so this bounds the
# concurrent Triton calls of one request. A task with more routable models cannot be planned, and
# a request may name no more tiers than a plan has steps.
MAX_PLAN_STEPS = 32
# The most calls one adaptive search may make: bounds the work a single request can ask for.
MAX_SEARCH_CALLS = 64
# The most tensors one request may carry: more than any model of the repository takes.
MAX_INPUT_TENSORS = 32

# A text task's prompt (TextPrompt), bounded before any model renders, embeds or reads it.
# The prompt's characters: its UTF-8 (at most 4 bytes each) fits one text of the embedding model.
MAX_PROMPT_CHARS = 16384
# The turns before the prompt (TextPrompt.context).
MAX_CONTEXT_TURNS = 32
# The prompt and every turn's content together, in characters: what one generation reads.
MAX_TEXT_CHARS = 65536
# The most tokens one generation may produce (SamplingLimits.max_tokens).
MAX_GENERATED_TOKENS = 2048
# The highest sampling temperature (SamplingLimits.temperature); 0 is greedy decoding.
MAX_TEMPERATURE = 2.0
