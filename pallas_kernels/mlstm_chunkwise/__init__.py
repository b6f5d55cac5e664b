"""Chunkwise mLSTM forward and backward as Pallas kernels (TFLA's structure), with a ``custom_vjp``."""

from .api import default_interpret, mlstm_chunkwise
from .heuristics import BlockSizes

__all__ = ["BlockSizes", "default_interpret", "mlstm_chunkwise"]
