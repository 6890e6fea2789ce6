"""User-facing scripts (dataset preparation, reports); each is also importable as a module."""
