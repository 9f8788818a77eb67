"""What the escalation steps a response reports say, read the same way by the services and their clients."""

from __future__ import annotations

from inferscale.v1 import common_pb2

# The decisions of a step whose model ran and answered: not skipped, stopped or failed.
ANSWERED = frozenset({common_pb2.DECISION_ACCEPT, common_pb2.DECISION_ESCALATE, common_pb2.DECISION_CONTRIBUTED})
