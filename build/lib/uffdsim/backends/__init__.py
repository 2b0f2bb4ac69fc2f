"""Backends that run scenario steps: the simulator and the running kernel."""
