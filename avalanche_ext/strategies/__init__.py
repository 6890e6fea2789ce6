"""Strategies: Avalanche's, fixed for a growing classifier and a one-experience-at-a-time runner;
one per module, each registers itself in ``STRATEGIES`` (and its plugins in ``PLUGINS``)."""
