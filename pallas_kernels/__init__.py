"""Pallas GPU kernels for bioxlstm-jax. Depends on jax only, never on bioxlstm_jax."""
