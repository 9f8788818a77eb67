"""ARC-AGI tasks in the official JSON format, and their scoring as the ARC Prize scores them."""
