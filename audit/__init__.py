"""Tamper-evident audit trail: event recording, Merkle sealing, signed checkpoints, proofs."""
