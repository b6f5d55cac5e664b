"""Flax Linen modules of xLSTM, built only from ``bioxlstm_jax.ops``.

The public models are ``XLSTMLM`` (causal or masked LM) and ``XLSTMClassifier``, configured by the
frozen ``XLSTMConfig`` (named configs in ``bioxlstm_jax.presets``).
"""

from bioxlstm_jax.nn.components import DepthwiseConv1d, LayerNorm, LinearHeadwiseExpand, MultiHeadLayerNorm
from bioxlstm_jax.nn.config import DNA_COMPLEMENT_MAP, XLSTMConfig
from bioxlstm_jax.nn.layers import GatedFeedForward, MLSTMLayer, SLSTMLayer
from bioxlstm_jax.nn.model import (
    XLSTMLM,
    XLSTMBackbone,
    XLSTMBlock,
    XLSTMClassifier,
    prefill,
    rc_augment,
    reverse_complement,
    zero_state,
)
from bioxlstm_jax.nn.rope import apply_rope, rope_angles

__all__ = [
    "DNA_COMPLEMENT_MAP",
    "DepthwiseConv1d",
    "GatedFeedForward",
    "LayerNorm",
    "LinearHeadwiseExpand",
    "MLSTMLayer",
    "MultiHeadLayerNorm",
    "SLSTMLayer",
    "XLSTMBackbone",
    "XLSTMBlock",
    "XLSTMClassifier",
    "XLSTMConfig",
    "XLSTMLM",
    "apply_rope",
    "prefill",
    "rc_augment",
    "reverse_complement",
    "rope_angles",
    "zero_state",
]
