"""The input checks of every mLSTM sequence op, the kernels' and ``bioxlstm_jax.ops``' alike (jax only,
light: importing it loads no Pallas)."""

from __future__ import annotations

__all__ = ["check_mlstm_inputs", "check_mlstm_state", "check_resets"]


def check_mlstm_inputs(q, k, v, i, f) -> tuple[int, int, int, int, int]:
    """``(B, NH, S, DHQK, DHV)`` of q, k (B, NH, S, DHQK), v (B, NH, S, DHV) and gate pre-activations
    i, f (B, NH, S); ``ValueError`` naming the first array of another shape."""
    if q.ndim != 4:
        raise ValueError(f"q must be (B, NH, S, DHQK), got shape {q.shape}")
    B, NH, S, DHQK = q.shape
    if k.shape != q.shape:
        raise ValueError(f"k must have the shape of q {q.shape}, got {k.shape}")
    if v.ndim != 4 or v.shape[:3] != (B, NH, S):
        raise ValueError(f"v must be (B, NH, S, DHV) = ({B}, {NH}, {S}, DHV), got {v.shape}")
    for name, g in (("i", i), ("f", f)):
        if g.shape != (B, NH, S):
            raise ValueError(f"gate pre-activation {name} must be (B, NH, S) = {(B, NH, S)}, got {g.shape}")
    return B, NH, S, DHQK, v.shape[-1]


def check_mlstm_state(state, B: int, NH: int, DHQK: int, DHV: int, name: str = "initial_state") -> None:
    """``ValueError`` (naming ``name``) unless ``state`` is ``(C (B, NH, DHQK, DHV), n (B, NH, DHQK), m (B, NH))``."""
    expected = ((B, NH, DHQK, DHV), (B, NH, DHQK), (B, NH))
    got = tuple(tuple(x.shape) for x in state)
    if got != expected:
        raise ValueError(f"{name} shapes (C, n, m) must be {expected}, got {got}")


def check_resets(resets, B: int, S: int):
    """``resets`` as a jax array, ``ValueError`` unless it is (B, S)."""
    import jax.numpy as jnp

    resets = jnp.asarray(resets)
    if resets.shape != (B, S):
        raise ValueError(f"resets must be (B, S) = {(B, S)}, got {resets.shape}")
    return resets
