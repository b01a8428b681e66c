"""The benchmark: the clock, the trial runner, and races over workloads x algorithms x seeds."""
