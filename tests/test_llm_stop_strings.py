"""Stop strings in the CPU engine's generation loop (inferscale/models/llm.py), without llama.cpp:
what is streamed is never taken back, and the text ends before the stop string, as vLLM's does."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from inferscale.models.llm import SamplingParameters, TokenStep, run_generation


class ScriptedGenerator:
    """Generates the given token texts, one after another, whatever the prompt."""

    context_tokens = 4096

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def tokenize(self, prompt: str) -> list[int]:
        return list(range(len(prompt.split())))

    def generate(self, prompt_tokens: list[int], params: SamplingParameters, cancelled: Callable[[], bool]) -> Iterator[TokenStep]:
        for index, text in enumerate(self.texts[: params.max_tokens]):
            yield TokenStep(token_id=index, text=text, logprob=-0.1)


def streamed(texts: list[str], stops: tuple[str, ...], max_tokens: int = 50) -> tuple[list[list[str]], str, int]:
    """What each yield passed on (token texts), the finish reason and the tokens counted as generated."""
    batches, finish, counted = [], "", 0
    params = SamplingParameters(max_tokens=max_tokens, stop=stops)
    for generation, new in run_generation(ScriptedGenerator(texts), "the prompt", params, lambda: False):  # type: ignore[arg-type]
        if new:
            batches.append([token.text for token in new])
        finish, counted = generation.finish_reason or "", len(generation.tokens)
    return batches, finish, counted


def test_a_stop_string_across_tokens_is_never_streamed() -> None:
    batches, finish, counted = streamed(["So", " 4", "\n#", "##", "# 4", " more"], ("####",))
    text = "".join(t for batch in batches for t in batch)
    assert text == "So 4\n" and finish == "stop"
    # "\n#", "##" could begin the stop string: held until "# 4" completed it, then cut.
    assert batches == [["So"], [" 4"], ["\n", "", ""]]
    assert counted == 5  # the stop string's tokens were generated: they count


def test_held_text_that_turns_out_not_to_be_a_stop_string_is_passed_on_whole() -> None:
    batches, finish, _ = streamed(["a", "#", "b", "#"], ("##",))
    assert batches == [["a"], ["#", "b"], ["#"]]  # the last "#" released at the end
    assert finish == "stop"


def test_without_stop_strings_every_token_is_passed_on_as_it_comes() -> None:
    batches, finish, counted = streamed(["x", "y", "z"], (), max_tokens=3)
    assert batches == [["x"], ["y"], ["z"]] and finish == "length" and counted == 3


def test_a_stop_string_inside_one_token_ends_the_text_before_it() -> None:
    batches, finish, _ = streamed(["12", " END here"], ("END",))
    assert "".join(t for batch in batches for t in batch) == "12 " and finish == "stop"
