"""The ARC solver models a Triton model repository serves, read from their configs: which solver
each runs and what it declares it costs. The cost benchmark, the ARC benchmark and the demo take
their budget from here, so that it follows the configs rather than a copy of them."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2


@dataclass
class Served:
    """One solver model of the repository: its name, the solver it serves, its declared cost."""

    model: str
    solver: str
    cost: float


def served_solvers(repository: pathlib.Path) -> list[Served]:
    """The ARC solver models of ``repository``, cheapest declared cost first."""
    found = []
    for config_path in sorted(repository.glob("arc_*/config.pbtxt")):
        config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
        parameters = {key: value.string_value for key, value in config.parameters.items()}
        found.append(Served(config.name, parameters["solver"], float(parameters["inferscale.cost"])))
    return sorted(found, key=lambda s: (s.cost, s.model))


def dearest_cost(repository: pathlib.Path) -> float:
    """The budget the ARC strategies are held to: the dearest solver's declared cost."""
    return max(solver.cost for solver in served_solvers(repository))
