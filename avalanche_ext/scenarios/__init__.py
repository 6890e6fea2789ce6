"""Continual-learning benchmarks, one module each; every module registers itself in SCENARIOS."""
