"""Synthetic data generation and contract-checked loading of customers and events (SPEC §1)."""
