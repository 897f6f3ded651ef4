"""credit checks."""
