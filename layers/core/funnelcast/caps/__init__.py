"""Fatigue caps: the pure policy (``policy``) and the DynamoDB cap table (``store``)."""
