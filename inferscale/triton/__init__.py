"""Access to NVIDIA Triton Inference Server: the embedded launcher and the async client."""
