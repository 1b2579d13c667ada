"""Composition root: settings, the `cdp` command and the all-in-one runner that wires the rooms together."""
