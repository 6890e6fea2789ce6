"""Examples of user code that plugs into avalanche-ext without editing it (see docs/plugins.md)."""
