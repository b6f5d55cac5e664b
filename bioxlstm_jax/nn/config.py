"""``XLSTMConfig``: one frozen dataclass describing every xLSTM model of the three Bio-xLSTM papers."""

from __future__ import annotations

import dataclasses
import math

from bioxlstm_jax.ops.mlstm import CHUNKWISE_KERNELS

__all__ = ["XLSTMConfig"]


ROPE_MODES = ("none", "inner", "head")
BIDIRECTIONAL_MODES = ("none", "sum", "alternating", "native")
FORMS = ("parallel", "chunkwise")
DTYPES = ("float32", "bfloat16", "float16")
SLSTM_BIAS_INITS = ("powerlaw_blockdependent", "small_init", "zeros")
REMAT_POLICIES = ("auto", "none", "block", "block_save_dots")


def _round_dim(dim: float, multiple: int, up: bool) -> int:
    n = dim / multiple
    return int((math.ceil(n) if up else math.floor(n)) * multiple)


@dataclasses.dataclass(frozen=True)
class XLSTMConfig:
    """Architecture and compute options of an xLSTM language model (see ``bioxlstm_jax.presets``).

    Blocks are mLSTM blocks except at ``slstm_at``. Every default is the official ``xlstm`` default.

    Attributes:
      vocab_size: number of token ids (logits are (B, S, vocab_size)).
      embedding_dim: model width D.
      num_blocks: number of residual blocks.
      slstm_at: indices of sLSTM blocks (each with a gated GELU feed-forward after it).
      context_length: training context (informational: any length runs).
      mlstm_num_heads, mlstm_proj_factor, mlstm_round_up: the mLSTM inner dim is
        ``proj_factor * D`` rounded to a multiple of 64, up (Prot-, Chem-xLSTM, ``xlstm``) or down
        (DNA-xLSTM); head dim = inner / heads.
      qkv_proj_blocksize: block size of the block-diagonal q, k, v projections.
      conv1d_kernel_size, mlstm_conv_causal: the mLSTM conv (``False`` = DNA-xLSTM "same" padding).
      bias: biases in the mLSTM linear layers (DNA-xLSTM ``m_bias``); never in the sLSTM / FFN.
      slstm_num_heads, slstm_conv1d_kernel_size, slstm_conv_causal, slstm_bias_init: the sLSTM layer.
      ffn_proj_factor, ffn_round_up, ffn_round_to: feed-forward width of sLSTM blocks.
      rope: ``"inner"`` = Prot-xLSTM RoPE over the whole inner dim from position ids, gates see the
        rotated q, k; ``"head"`` = DNA-xLSTM RoPE per head, gates see unrotated q, k.
      rope_base: RoPE base frequency.
      bidirectional: ``"sum"`` = DNA-xLSTM's weight-shared ``block(x) + flip(block(flip(x)))`` (the
        residual is counted twice, as the reference); ``"alternating"`` = even blocks run on the
        time-reversed sequence; ``"native"`` = non-causal parallel mLSTM (sLSTM blocks stay causal).
      rcps: reverse-complement parameter sharing (hidden width 2D); needs ``complement_map``.
      complement_map: token id -> id of its complement (an involution).
      add_post_blocks_norm: LayerNorm after the last block.
      tie_weights: LM head = token embedding transposed (off in all three references).
      form: mLSTM form for full sequences: ``"chunkwise"`` (linear memory, state in/out) or
        ``"parallel"`` (quadratic; the only form of ``bidirectional="native"``).
      chunk_size: chunk length of the chunkwise form.
      kernel: the ``kernel`` of ``bioxlstm_jax.ops.mlstm_chunkwise`` (chunkwise form): ``"auto"`` (Pallas
        kernels where proven on this GPU, else XLA), ``"pallas_mosaic"``, ``"pallas_triton"`` or ``"xla"``.
      eps: mLSTM normalizer epsilon.
      dtype: activation dtype; parameters and cell states are always float32.
      remat: what the backward pass recomputes (``bioxlstm_jax.nn.backbone`` module docstring):
        ``"none"`` (autodiff saves what it needs), ``"block"`` (only each block's input is saved; the
        block runs again in the backward pass), ``"block_save_dots"`` (as ``"block"``, but the
        outputs of the blocks' dense projections are saved too) or ``"auto"`` (``"none"`` when the
        activations fit in half the device's memory, else ``"block"``: ``nn.resolve_remat``).
        ``True`` / ``False`` (configs of older runs) mean ``"block"`` / ``"none"``.
      remat_segment: with remat, a block whose passes are causal and chunkwise is recomputed in
        segments of this many tokens (its state carried from one to the next), so the backward pass
        holds one segment's activations instead of the sequence's; ``0``: the whole block at once. A
        multiple of ``chunk_size`` (the chunks, and so the numbers, are the same as without segments;
        ``"auto"`` rounds it down to one).
    """

    vocab_size: int
    embedding_dim: int = 128
    num_blocks: int = 1
    slstm_at: tuple[int, ...] = ()
    context_length: int = 1024
    mlstm_num_heads: int = 4
    mlstm_proj_factor: float = 2.0
    mlstm_round_up: bool = True
    qkv_proj_blocksize: int = 4
    conv1d_kernel_size: int = 4
    mlstm_conv_causal: bool = True
    bias: bool = False
    slstm_num_heads: int = 4
    slstm_conv1d_kernel_size: int = 4
    slstm_conv_causal: bool = True
    slstm_bias_init: str = "powerlaw_blockdependent"
    ffn_proj_factor: float = 1.3
    ffn_round_up: bool = True
    ffn_round_to: int = 64
    rope: str = "none"
    rope_base: float = 500_000.0
    bidirectional: str = "none"
    rcps: bool = False
    complement_map: tuple[int, ...] | None = None
    add_post_blocks_norm: bool = True
    tie_weights: bool = False
    form: str = "chunkwise"
    chunk_size: int = 64
    kernel: str = "auto"
    eps: float = 1e-6
    dtype: str = "float32"
    remat: str = "auto"
    remat_segment: int = 2048

    def __post_init__(self):
        object.__setattr__(self, "slstm_at", tuple(int(i) for i in self.slstm_at))
        if isinstance(self.remat, bool):
            object.__setattr__(self, "remat", "block" if self.remat else "none")
        if self.complement_map is not None:
            object.__setattr__(self, "complement_map", tuple(int(i) for i in self.complement_map))
        for name, value, allowed in [
            ("rope", self.rope, ROPE_MODES),
            ("bidirectional", self.bidirectional, BIDIRECTIONAL_MODES),
            ("form", self.form, FORMS),
            ("kernel", self.kernel, CHUNKWISE_KERNELS),
            ("dtype", self.dtype, DTYPES),
            ("slstm_bias_init", self.slstm_bias_init, SLSTM_BIAS_INITS),
            ("remat", self.remat, REMAT_POLICIES),
        ]:
            if value not in allowed:
                raise ValueError(f"XLSTMConfig.{name} must be one of {allowed}, got {value!r}")
        for name in ("vocab_size", "embedding_dim", "num_blocks", "context_length", "chunk_size", "conv1d_kernel_size",
                     "slstm_conv1d_kernel_size", "qkv_proj_blocksize", "mlstm_num_heads", "slstm_num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"XLSTMConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.remat_segment < 0 or self.remat not in ("none", "auto") and self.remat_segment % self.chunk_size:
            raise ValueError(f"XLSTMConfig.remat_segment must be 0 or a positive multiple of chunk_size "
                             f"({self.chunk_size}), got {self.remat_segment}")
        bad = [i for i in self.slstm_at if not 0 <= i < self.num_blocks]
        if bad or len(set(self.slstm_at)) != len(self.slstm_at):
            raise ValueError(f"slstm_at must be distinct block indices in [0, {self.num_blocks}), got {self.slstm_at}")
        if self.has_mlstm:
            inner = self.mlstm_inner_dim
            if inner < 1 or inner % self.mlstm_num_heads or inner % self.qkv_proj_blocksize:
                raise ValueError(
                    f"mLSTM inner dim {inner} (D={self.embedding_dim} x {self.mlstm_proj_factor}, rounded) must be "
                    f"positive and divisible by mlstm_num_heads={self.mlstm_num_heads} and qkv_proj_blocksize"
                )
            if self.rope == "inner" and inner % 2 or self.rope == "head" and self.mlstm_head_dim % 2:
                raise ValueError(f"rope={self.rope!r} needs an even rotated dimension")
        if self.slstm_at:
            if self.embedding_dim % self.slstm_num_heads:
                raise ValueError(f"embedding_dim {self.embedding_dim} must be divisible by slstm_num_heads")
            if self.ffn_dim < 1:
                raise ValueError(f"feed-forward dim {self.ffn_dim} must be positive")
        if self.bidirectional == "native" and self.form != "parallel":
            raise ValueError("bidirectional='native' needs form='parallel' (the chunkwise form is causal)")
        if self.rcps:
            cm = self.complement_map
            if cm is None or len(cm) != self.vocab_size or sorted(cm) != list(range(self.vocab_size)):
                raise ValueError("rcps=True needs complement_map: a permutation of range(vocab_size)")
            if any(cm[cm[i]] != i for i in range(self.vocab_size)):
                raise ValueError("complement_map must be an involution (complement of complement = identity)")
            if self.tie_weights:
                raise ValueError("rcps=True with tie_weights=True is not supported")

    @property
    def block_types(self) -> tuple[str, ...]:
        """``"m"`` or ``"s"`` per block."""
        return tuple("s" if i in self.slstm_at else "m" for i in range(self.num_blocks))

    @property
    def has_mlstm(self) -> bool:
        return len(self.slstm_at) < self.num_blocks

    @property
    def mlstm_inner_dim(self) -> int:
        return _round_dim(self.mlstm_proj_factor * self.embedding_dim, 64, self.mlstm_round_up)

    @property
    def mlstm_head_dim(self) -> int:
        return self.mlstm_inner_dim // self.mlstm_num_heads

    @property
    def slstm_head_dim(self) -> int:
        return self.embedding_dim // self.slstm_num_heads

    @property
    def ffn_dim(self) -> int:
        return _round_dim(self.ffn_proj_factor * self.embedding_dim, self.ffn_round_to, self.ffn_round_up)

    @property
    def causal(self) -> bool:
        """True when position t sees only tokens <= t (state passing and step decoding possible)."""
        return (
            self.bidirectional == "none"
            and not self.rcps
            and self.mlstm_conv_causal
            and (self.slstm_conv_causal or not self.slstm_at)
        )

    def replace(self, **changes) -> "XLSTMConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "XLSTMConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown XLSTMConfig keys: {sorted(unknown)}")
        return cls(**d)
