"""Triton python-backend entry point of a llama.cpp text model; the logic lives in inferscale.models.llm.

The vLLM backend's contract (``text_input``, ``stream``, ``sampling_parameters``, the ``return_*``
switches in; ``text_output``, ``finish_reason``, ``cumulative_logprob``, ``logprobs``,
``num_input_tokens``, ``num_output_tokens`` out), decoupled. The config's ``llm.*`` parameters
name the pinned weights.
"""

from __future__ import annotations

import pathlib
import sys

try:
    from inferscale.models.llm_adapter import TritonPythonModel
except ImportError:
    # Triton's python stub may embed an interpreter without the project installed (NVIDIA's
    # container with the project mounted): the project root is three levels above this file.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))
    from inferscale.models.llm_adapter import TritonPythonModel

__all__ = ["TritonPythonModel"]
