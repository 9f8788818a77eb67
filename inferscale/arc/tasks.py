"""Reading ARC-AGI tasks in the official JSON format from a folder.

A task file holds ``{"train": [{"input": grid, "output": grid}, ...], "test": [{"input": grid,
"output": grid}, ...]}``; a grid is a list of rows of integers 0-9, 1 to 30 rows and columns.
The data is read where it lies (``../shared/arc`` beside the project, or a folder the user
names) and never copied into the project.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass

Grid = tuple[tuple[int, ...], ...]

# Where the shared task data lies beside a checkout of the project.
SHARED_ARC = pathlib.Path(__file__).resolve().parents[3] / "shared" / "arc"
MAX_SIDE = 30
# The most training pairs a task may hold: public ARC tasks hold at most 10, and a solver's work
# grows with them, so a request cannot ask for unbounded work.
MAX_TRAIN_PAIRS = 16


@dataclass(frozen=True)
class Pair:
    """One example: an input grid and its output (None for a test input whose answer is hidden)."""

    input: Grid
    output: Grid | None


@dataclass(frozen=True)
class Task:
    """One ARC task: its id (the file's stem), its training pairs and its test pairs."""

    id: str
    train: tuple[Pair, ...]
    test: tuple[Pair, ...]


def to_grid(value: object, what: str) -> Grid:
    """Checks a JSON grid (rows of integers 0-9, all rows the same length, 1-30 each way) and
    returns it as a tuple of tuples; raises ValueError naming ``what`` and the fault."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SIDE:
        raise ValueError(f"{what} must be a list of 1 to {MAX_SIDE} rows")
    rows = []
    for index, row in enumerate(value):
        if not isinstance(row, list) or not 1 <= len(row) <= MAX_SIDE:
            raise ValueError(f"{what} row {index} must be a list of 1 to {MAX_SIDE} cells")
        if any(type(cell) is not int or not 0 <= cell <= 9 for cell in row):
            raise ValueError(f"{what} row {index} must hold integers 0-9")
        rows.append(tuple(row))
    if len({len(row) for row in rows}) != 1:
        raise ValueError(f"{what} has rows of different lengths")
    return tuple(rows)


def parse_task(task_id: str, data: object) -> Task:
    """A task from its parsed JSON; raises ValueError naming the malformed part."""
    if not isinstance(data, dict) or not isinstance(data.get("train"), list) or not isinstance(data.get("test"), list):
        raise ValueError(f"task {task_id}: expected an object with 'train' and 'test' lists")
    if not data["train"] or not data["test"]:
        raise ValueError(f"task {task_id}: 'train' and 'test' must not be empty")
    if len(data["train"]) > MAX_TRAIN_PAIRS:
        raise ValueError(f"task {task_id}: at most {MAX_TRAIN_PAIRS} training pairs, not {len(data['train'])}")

    def pairs(part: str, output_required: bool) -> tuple[Pair, ...]:
        result = []
        for index, pair in enumerate(data[part]):
            where = f"task {task_id} {part}[{index}]"
            if not isinstance(pair, dict) or "input" not in pair:
                raise ValueError(f"{where}: expected an object with an 'input'")
            if output_required and "output" not in pair:
                raise ValueError(f"{where}: a training pair needs an 'output'")
            output = to_grid(pair["output"], f"{where}.output") if "output" in pair else None
            result.append(Pair(to_grid(pair["input"], f"{where}.input"), output))
        return tuple(result)

    return Task(task_id, pairs("train", True), pairs("test", False))


def load_tasks(folder: pathlib.Path) -> Iterator[Task]:
    """Every task of a folder, one per ``*.json`` file, in file-name order."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of ARC task files")
    for path in sorted(folder.glob("*.json")):
        yield parse_task(path.stem, json.loads(path.read_text()))
