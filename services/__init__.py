"""InferScale services: one package per gRPC service."""
