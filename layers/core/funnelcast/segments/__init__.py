"""Segment engine: compile rule sets into per-user features and evaluate membership vectorised."""
