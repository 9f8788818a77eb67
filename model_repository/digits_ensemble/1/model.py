"""Triton python-backend entry point of this digits model; the adapter lives in inferscale.models.triton_adapter.

The same adapter serves every digits model: it loads ``weights.npz`` next to this file.
"""

import pathlib
import sys

try:
    from inferscale.models.triton_adapter import TritonPythonModel
except ImportError:
    # Triton's python stub may embed an interpreter without the project installed (NVIDIA's
    # container with the project mounted): the project root is three levels above this file.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))
    from inferscale.models.triton_adapter import TritonPythonModel

__all__ = ["TritonPythonModel"]
