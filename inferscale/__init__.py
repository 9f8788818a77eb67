"""InferScale: shared library of the services (telemetry, Triton access, tensors, the suite launcher)."""
