"""Triton python-backend entry point of the intent_classifier model; the logic lives in inferscale.models.intents.

``TEXT`` (BYTES [N], UTF-8 strings) in, ``PROBS`` (FP32 [N, 10]) out: each text's probability of
each smart-home intent, columns in the order of ``inferscale.models.intents.INTENTS``, by nearest
centroid over all-MiniLM-L6-v2 embeddings (the same embedder as the text_embedding model).
"""

from __future__ import annotations

import pathlib
import sys

try:
    from inferscale.models.intents import IntentClassifier
    from inferscale.models.text_adapter import TextModel
    from inferscale.models.text_embedding import TextEmbedder
except ImportError:
    # Triton's python stub may embed an interpreter without the project installed (NVIDIA's
    # container with the project mounted): the project root is three levels above this file.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))
    from inferscale.models.intents import IntentClassifier
    from inferscale.models.text_adapter import TextModel
    from inferscale.models.text_embedding import TextEmbedder


class TritonPythonModel(TextModel):
    """One model instance of intent_classifier."""

    output_name = "PROBS"

    def load(self):  # type: ignore[no-untyped-def]
        """Loads the embedder and builds one centroid per intent from the prototype phrases (under a second)."""
        return IntentClassifier(TextEmbedder()).predict_proba
