"""Pydantic models of the public contract. Imports nothing else of the project."""
