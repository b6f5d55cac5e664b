"""Flax Linen modules of xLSTM, built only from ``bioxlstm_jax.ops``.

The public models are ``XLSTMLM`` (causal or masked LM) and ``XLSTMClassifier`` (``nn.lm``) over the
block stack ``XLSTMBackbone`` (``nn.backbone``), configured by the frozen ``XLSTMConfig`` (named configs
in ``bioxlstm_jax.presets``); recurrent state and prompt prefill are in ``nn.state``.
"""

from bioxlstm_jax.nn.backbone import XLSTMBackbone, XLSTMBlock, activation_bytes, resolve_remat, reverse_complement
from bioxlstm_jax.nn.components import DepthwiseConv1d, LayerNorm, LinearHeadwiseExpand, MultiHeadLayerNorm
from bioxlstm_jax.nn.config import XLSTMConfig
from bioxlstm_jax.nn.layers import GatedFeedForward, MLSTMLayer, SLSTMLayer
from bioxlstm_jax.nn.lm import XLSTMLM, XLSTMClassifier
from bioxlstm_jax.nn.rope import apply_rope, rope_angles
from bioxlstm_jax.nn.state import forward_with_state, prefill, zero_state

__all__ = [
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
    "activation_bytes",
    "apply_rope",
    "forward_with_state",
    "prefill",
    "resolve_remat",
    "reverse_complement",
    "rope_angles",
    "zero_state",
]
