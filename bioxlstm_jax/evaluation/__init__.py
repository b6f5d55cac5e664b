"""Evaluation: ProteinGym zero-shot fitness (more domains follow)."""
