"""Generated text: prompts, the vLLM-backend contract's tensors, answer extraction and confidence. Pure logic, no gRPC."""
