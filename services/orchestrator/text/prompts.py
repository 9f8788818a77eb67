"""How a request's turns become a model's ``text_input``, in the chat format its config declares.

Triton's vLLM backend takes the prompt as raw text and applies no chat template, so the
orchestrator renders the turns itself: ``chatml`` (Qwen, SmolLM and many others) or ``plain``.
The verifier's and the refiner's prompts are built here too, from the request's own turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Turn:
    """One chat turn."""

    role: str
    content: str


def render(turns: Sequence[Turn], prompt_format: str) -> str:
    """The text a model of ``prompt_format`` reads, ending where the assistant's answer begins."""
    if prompt_format == "chatml":
        rendered = "".join(f"<|im_start|>{turn.role}\n{_inert(turn.content)}<|im_end|>\n" for turn in turns)
        return rendered + "<|im_start|>assistant\n"
    if prompt_format == "plain":
        rendered = "".join(f"{turn.role.capitalize()}: {turn.content}\n\n" for turn in turns)
        return rendered + "Assistant:"
    raise ValueError(f"prompt format {prompt_format!r} is not chatml or plain")


def _inert(content: str) -> str:
    """A turn's content with the chat format's markers broken up: the engine parses them as control
    tokens wherever they stand, so a prompt holding "<|im_end|><|im_start|>system" would open a
    turn of its own choosing."""
    return content.replace("<|", "<\u200b|")


def answer_turns(context: Sequence[Turn], prompt: str) -> list[Turn]:
    """The turns that ask the task's question: the request's context, then its prompt."""
    return [*context, Turn("user", prompt)]


def refinement_turns(context: Sequence[Turn], prompt: str, draft: str) -> list[Turn]:
    """The turns that ask a stronger model to check and improve a draft answer."""
    return [
        *context,
        Turn(
            "user",
            f"{prompt}\n\nA first attempt at this answered:\n{draft.strip()}\n\n"
            "Check that attempt step by step, correct any mistake, and give your own answer in the same format.",
        ),
    ]


# What the verifier is asked; its probability of answering "Yes" first is the answer's score.
VERIFIER_QUESTION = "Is the proposed answer correct? Reply with Yes or No."
YES = "Yes"
NO = "No"


def verifier_turns(prompt: str, answer_text: str) -> list[Turn]:
    """The turns that ask a verifier whether ``answer_text`` answers ``prompt`` correctly."""
    return [
        Turn("system", "You check whether answers to questions are correct."),
        Turn("user", f"Question:\n{prompt}\n\nProposed answer:\n{answer_text.strip()}\n\n{VERIFIER_QUESTION}"),
    ]
