"""Composition root: the `cdp` command and the runner that builds the parts of each role and wires the rooms."""
