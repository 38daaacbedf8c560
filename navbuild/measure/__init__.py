"""Measuring artifacts: correctness against the reference, profiling runners, selecting the best."""
