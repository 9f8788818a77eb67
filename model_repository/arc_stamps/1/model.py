"""Triton python-backend entry point of this ARC solver; the adapter lives in inferscale.arc.solver_adapter.

The same adapter serves every ARC solver: the config's "solver" parameter names which.
"""

import pathlib
import sys

try:
    from inferscale.arc.solver_adapter import SolverModel as TritonPythonModel
except ImportError:
    # Triton's python stub may embed an interpreter without the project installed (NVIDIA's
    # container with the project mounted): the project root is three levels above this file.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))
    from inferscale.arc.solver_adapter import SolverModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
