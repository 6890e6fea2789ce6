"""Continual-learning plugins (hooks added to any strategy), one per module; each registers itself
in PLUGINS."""
