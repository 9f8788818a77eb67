"""Shows an InferStream call as it happens: each step as it starts, its tokens as they arrive, its decision.

The command line (``inferscale infer --stream``) and the demo write the same lines. Each event is
flushed when written, so that a reader sees the tokens as the model generates them.
"""

from __future__ import annotations

from typing import TextIO

from inferscale.steps import ANSWERED
from inferscale.v1 import common_pb2, router_service_pb2

# Generated text is indented under the line of the step that generates it.
TEXT_INDENT = "    "


def _decision(decision: int) -> str:
    return common_pb2.Decision.Name(decision).removeprefix("DECISION_").lower()


def _model(model: common_pb2.ModelRef) -> str:
    """``name v2``; a version of 0 (the latest) is left out."""
    return f"{model.name} v{model.version}" if model.version else model.name


def step_summary(step: common_pb2.EscalationStep) -> str:
    """One line on a finished step: its decision and why, its answer, tokens, time and cost."""
    line = f"{step.model.name} {_decision(step.decision)}"
    if step.reason:
        line += f" ({step.reason})"
    if step.decision not in ANSWERED and step.decision != common_pb2.DECISION_ANALYZED:
        return line  # the step did not run: no answer to show
    line += f": answer {step.answer.label or 'none'}"
    if not step.reason:
        line += f", confidence {step.answer.confidence:.3f}"  # a reason states it already
    if step.usage.output_tokens:
        line += f", {step.usage.input_tokens} tokens in, {step.usage.output_tokens} out"
    return line + f", {_duration(step.latency_ms)}, cost {step.cost:g}"


def _duration(milliseconds: float) -> str:
    return f"{milliseconds:.0f} ms" if milliseconds < 1000 else f"{milliseconds / 1000:.1f} s"


class StreamView:
    """Writes the events of one InferStream call to ``out`` as they come.

    After the last event, ``response`` holds the call's InferResponse and ``tokens_shown`` says
    how many tokens were written (none when a cache served the answer).
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._models: dict[int, str] = {}
        # The step whose tokens were written last, and whether the next write starts a line.
        self._writing: int | None = None
        self._line_open = False
        self.tokens_shown = 0
        self.response: router_service_pb2.InferResponse | None = None

    def show(self, event: router_service_pb2.InferStreamResponse) -> None:
        """Writes one event and flushes."""
        kind = event.WhichOneof("event")
        if kind == "step_started":
            self._started(event.step_started)
        elif kind == "tokens":
            self._tokens(event.tokens)
        elif kind == "step_finished":
            self._end_line()
            self._writing = None
            self._out.write(f"  {step_summary(event.step_finished)}\n")
        elif kind == "response":
            self._end_line()
            self.response = event.response
        self._out.flush()

    def _started(self, started: common_pb2.StepStarted) -> None:
        self._end_line()
        self._writing = None
        self._models[started.position] = started.model.name
        role = f"tier {started.tier}" if started.index >= 0 else "analysis"
        action = common_pb2.SearchAction.Name(started.search_action).removeprefix("SEARCH_ACTION_").lower()
        if started.search_action != common_pb2.SEARCH_ACTION_UNSPECIFIED:
            role += f", {action}"
        self._out.write(f"  {_model(started.model)} ({role}) starts\n")

    def _tokens(self, delta: common_pb2.TokenDelta) -> None:
        if delta.position != self._writing:
            # Steps that generate at once (an ensemble) take turns on lines of their own.
            self._end_line()
            if self._writing is not None and delta.position in self._models:
                self._out.write(f"{TEXT_INDENT}[{self._models[delta.position]}]\n")
            self._writing = delta.position
        for token in delta.tokens:
            for index, piece in enumerate(token.text.split("\n")):
                if index:
                    self._out.write("\n")
                    self._line_open = False
                if piece:
                    if not self._line_open:
                        self._out.write(TEXT_INDENT)
                        self._line_open = True
                    self._out.write(piece)
            self.tokens_shown += 1

    def _end_line(self) -> None:
        if self._line_open:
            self._out.write("\n")
            self._line_open = False
