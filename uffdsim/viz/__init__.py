"""Pictures of the simulator (matplotlib): address spaces, steps, decision paths, timelines, benchmarks."""
