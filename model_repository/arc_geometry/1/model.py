"""Triton python-backend entry point of arc_geometry: the geometric ARC solver (inferscale.arc.solvers)."""

import pathlib
import sys

try:
    from inferscale.arc.solver_adapter import SolverModel
    from inferscale.arc.solvers import geometric_candidates
except ImportError:
    # Triton's python stub may embed an interpreter without the project installed (NVIDIA's
    # container with the project mounted): the project root is three levels above this file.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))
    from inferscale.arc.solver_adapter import SolverModel
    from inferscale.arc.solvers import geometric_candidates


class TritonPythonModel(SolverModel):
    """arc_geometry: a symmetry of the square, then colours learned from the training pairs."""

    solve = staticmethod(geometric_candidates)
