"""Feedback: provider events normalised, de-duplicated, and turned into suppressions."""
