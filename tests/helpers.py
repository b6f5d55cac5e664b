"""Shared test utilities: random mLSTM inputs, the per-head LayerNorm loss, scaled comparisons."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

DATA = Path(__file__).resolve().parent / "data"


def mlstm_inputs(seed, B=2, NH=2, S=64, DHQK=16, DHV=32, *, f_offset=3.0, i_offset=0.0, dtype=np.float64):
    """q, k, v ~ N(0, 1); i ~ N(i_offset, 1); f ~ N(f_offset, 1), as NumPy arrays (the mlstm_kernels regime)."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(B, NH, S, DHQK))
    k = rng.normal(size=(B, NH, S, DHQK))
    v = rng.normal(size=(B, NH, S, DHV))
    i = rng.normal(size=(B, NH, S)) + i_offset
    f = rng.normal(size=(B, NH, S)) + f_offset
    return tuple(x.astype(dtype) for x in (q, k, v, i, f))


def random_state(seed, B, NH, DHQK, DHV, dtype=np.float64):
    """A plausible MLSTMState (C, n, m) as NumPy arrays (n > 0 side, m of either sign)."""
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(B, NH, DHQK, DHV))
    n = rng.normal(size=(B, NH, DHQK))
    m = rng.normal(size=(B, NH))
    return tuple(x.astype(dtype) for x in (C, n, m))


def layernorm_loss(h, seed=0, eps=1e-5):
    """Per-head LayerNorm over DHV, plus a fixed random offset, squared and summed (mlstm_kernels' test loss).

    The chunkwise kernels' custom VJP is exact only for losses of the per-head-normalized output.
    """
    h = h.astype(jnp.promote_types(h.dtype, jnp.float32))
    mu = jnp.mean(h, axis=-1, keepdims=True)
    var = jnp.var(h, axis=-1, keepdims=True)
    normed = (h - mu) / jnp.sqrt(var + eps)
    offset = jax.random.normal(jax.random.key(seed), h.shape, h.dtype)
    return jnp.sum((normed + offset) ** 2)


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def assert_close_scaled(actual, expected, tol, what=""):
    """max |actual - expected| <= tol * max(1, max |expected|).

    float32 mLSTM outputs for N(0, 1) inputs reach |h| ~ 40 (the normalizer max(|n.q|, exp(-m)) sits
    near its lower bound), so float32 rounding is relative to that scale; this is the fair float32 check.
    """
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values"
    scale = max(1.0, float(np.max(np.abs(expected))))
    err = float(np.max(np.abs(actual - expected)))
    assert err <= tol * scale, f"{what}: max abs error {err:.3e} > {tol:.1e} * scale {scale:.3g}"


def data_path(*parts: str) -> Path:
    """A test fixture under ``tests/data`` (real data cut small; see tests/data/README.md)."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such test fixture (tests/data/README.md lists them)")
    return path


def shared_data(*parts: str) -> Path:
    """A path under the full shared real-data folder named by ``$BIOXLSTM_SHARED_DATA``, for the optional
    ``slow`` release checks on larger data; the default suite never needs it."""
    root = os.environ.get("BIOXLSTM_SHARED_DATA")
    if not root:
        raise RuntimeError("this release check reads the full shared data: set BIOXLSTM_SHARED_DATA "
                           "(e.g. BIOXLSTM_SHARED_DATA=../shared/data python -m pytest -m slow)")
    path = Path(root).joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing under BIOXLSTM_SHARED_DATA={root}")
    return path


def xla_flags(devices: int) -> str:
    """This session's ``XLA_FLAGS`` (tests/conftest.py) with ``devices`` host devices, for a command."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    return " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
