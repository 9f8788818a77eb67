"""Triton python-backend entry point of digits_complexity; the adapter lives in inferscale.models.complexity_adapter."""

import pathlib
import sys

try:
    from inferscale.models.complexity_adapter import TritonPythonModel
except ImportError:
    # Triton's python stub may embed an interpreter without the project installed (NVIDIA's
    # container with the project mounted): the project root is three levels above this file.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))
    from inferscale.models.complexity_adapter import TritonPythonModel

__all__ = ["TritonPythonModel"]
