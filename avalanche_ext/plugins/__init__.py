"""Continual-learning plugins and strategies, one per module; each registers itself in PLUGINS."""
