"""Pallas GPU kernels for bioxlstm-jax. Depends on jax only, never on bioxlstm_jax."""

from .mlstm_chunkwise import BlockSizes, mlstm_chunkwise

__all__ = ["BlockSizes", "mlstm_chunkwise"]
