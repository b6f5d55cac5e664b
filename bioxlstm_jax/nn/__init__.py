"""Flax Linen modules of xLSTM, built only from ``bioxlstm_jax.ops``."""

from bioxlstm_jax.nn.components import CausalConv1d, LayerNorm, LinearHeadwiseExpand, MultiHeadLayerNorm

__all__ = ["CausalConv1d", "LayerNorm", "LinearHeadwiseExpand", "MultiHeadLayerNorm"]
