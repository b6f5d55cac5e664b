"""Tile sizes, warps and stages of the chunkwise mLSTM kernels, chosen from the head dims and dtype."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp


def next_power_of_2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def padded_head_dim(d: int) -> int:
    """Head dims are padded to a power of two, at least 16 (Triton's minimum dot size)."""
    return max(16, next_power_of_2(d))


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tiling of the chunkwise mLSTM kernels.

    Attributes:
      block_q: query rows per program of the intra-chunk kernels (forward H, backward dQ).
      block_kv: key rows per inner step of the intra-chunk kernels, per program of dK and dV, and chunk
        rows per step of the state kernels (forward C, backward dC).
      block_dqk: DHQK columns of a state tile, of a dQ or dK tile, and per step of every contraction
        over DHQK.
      block_dv: DHV columns of a state tile, of an H or dV tile, and per step of every contraction over DHV.
      num_warps, num_stages: Triton launch parameters.
    No kernel holds more than these tiles (shared memory does not grow with the head dims or the chunk):
    ``benchmarks/gpu_compile.py`` compiles every preset's kernels for A100 and H100 with them.
    All sizes are powers of two, at least 16; ``block_q`` and ``block_kv`` are clamped to the chunk
    size and the head-dim blocks to the padded head dims.
    """

    block_q: int = 64
    block_kv: int = 64
    block_dqk: int = 64
    block_dv: int = 64
    num_warps: int = 4
    num_stages: int = 2

    def __post_init__(self):
        for name in ("block_q", "block_kv", "block_dqk", "block_dv"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"BlockSizes.{name} must be a power of two >= 16, got {value}")
        if self.num_warps < 1 or self.num_warps & (self.num_warps - 1):
            raise ValueError(f"BlockSizes.num_warps must be a power of two, got {self.num_warps}")
        if self.num_stages < 1:
            raise ValueError(f"BlockSizes.num_stages must be >= 1, got {self.num_stages}")

    @classmethod
    def for_shape(cls, chunk_size: int, dhqk: int, dhv: int, dtype="bfloat16") -> "BlockSizes":
        """Defaults by head dims and input dtype: 64-row query / key tiles for 16-bit inputs with
        DHQK + DHV <= 256, else 32 (float32 dots run on FMA units and hold their tiles in registers);
        8 warps, 2 stages. Measured by ``benchmarks/gpu_compile.py``: 64-row tiles at 4 warps spilled
        kilobytes in float32 and up to 408 bytes in bfloat16 (A100); with these, at most 88 bytes."""
        dk, dv = padded_head_dim(dhqk), padded_head_dim(dhv)
        narrow = dk + dv <= 256 and jnp.dtype(dtype).itemsize < 4
        return cls(
            block_q=min(64 if narrow else 32, chunk_size),
            block_kv=min(64 if narrow else 32, chunk_size),
            block_dqk=min(64, dk),
            block_dv=min(64, dv),
            num_warps=8,
            num_stages=2,
        ).clamped(chunk_size, dk, dv)

    def clamped(self, chunk_size: int, dk: int, dv: int) -> "BlockSizes":
        """These sizes fitted to a chunk of ``chunk_size`` tokens and padded head dims ``dk``, ``dv``."""
        return dataclasses.replace(
            self,
            block_q=min(self.block_q, chunk_size),
            block_kv=min(self.block_kv, chunk_size),
            block_dqk=min(self.block_dqk, dk),
            block_dv=min(self.block_dv, dv),
        )
