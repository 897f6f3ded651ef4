"""Deterministic synthetic data for demos, load tests and local development."""
