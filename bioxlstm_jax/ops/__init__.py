"""Pure-JAX xLSTM math: the single source of truth for every form of both cells."""

from bioxlstm_jax.ops.mlstm import (
    CHUNKWISE_KERNELS,
    MLSTMState,
    MLSTMSummary,
    apply_summary,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_recurrent,
    mlstm_step,
    mlstm_summary,
)
from bioxlstm_jax.ops.slstm import SLSTMState, slstm_scan, slstm_step

__all__ = [
    "CHUNKWISE_KERNELS",
    "MLSTMState",
    "MLSTMSummary",
    "apply_summary",
    "mlstm_chunkwise",
    "mlstm_parallel",
    "mlstm_recurrent",
    "mlstm_step",
    "mlstm_summary",
    "SLSTMState",
    "slstm_scan",
    "slstm_step",
]
