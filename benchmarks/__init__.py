"""Benchmarks: scripts that print tables (and draw plots) of measured figures; never timed assertions."""
