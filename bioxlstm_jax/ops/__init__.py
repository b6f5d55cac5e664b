"""Pure-JAX xLSTM math: the single source of truth for every form of both cells."""

from bioxlstm_jax.ops.mlstm import (
    CHUNKWISE_KERNELS,
    MLSTMState,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_recurrent,
    mlstm_step,
)
from bioxlstm_jax.ops.slstm import SLSTMState, slstm_scan, slstm_step

__all__ = [
    "CHUNKWISE_KERNELS",
    "MLSTMState",
    "mlstm_chunkwise",
    "mlstm_parallel",
    "mlstm_recurrent",
    "mlstm_step",
    "SLSTMState",
    "slstm_scan",
    "slstm_step",
]
