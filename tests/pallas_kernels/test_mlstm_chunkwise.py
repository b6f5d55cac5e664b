"""The Pallas chunkwise mLSTM kernels agree with the XLA reference (``bioxlstm_jax.ops``).

Both backends: Triton (``kernel="pallas_triton"``) and Mosaic GPU (``"pallas_mosaic"``, marked
``mosaic``: bfloat16 / float16 only). On CPU the Triton kernels run in the Pallas interpreter, the
Mosaic GPU kernels in Pallas's GPU interpret mode (shared memory, barriers and TMA simulated, with race
detection that raises; jax >= 0.12), jitted; separate tests prove both lower for CUDA. Tests marked ``gpu`` run them
compiled where a GPU is present.

Tolerances (``assert_close_scaled``: max abs error <= tol * max(1, max |reference|)), with the
largest errors measured on this suite in brackets:
- float32 inputs: outputs and states 2e-5 [3.4e-6], gradients 5e-5 [8.6e-6]. Under strong forgetting
  (log f ~ -5 with -25 resets) 2e-4 for both [8.1e-5, 1.5e-5]: the kernels, as TFLA, take within-chunk
  log decays as differences of a chunk cumsum (|b| up to L * 25), the reference as direct partial sums.
- 16-bit inputs, against float32 XLA on the same rounded inputs: outputs 2e-2 [5.1e-3], gradients 1e-1
  [5.3e-2]; the kernels feed 16-bit operands to the matmuls (float32 accumulation), as TFLA does.
"""

from __future__ import annotations

import contextlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pallas_kernels
from bioxlstm_jax import ops
from bioxlstm_jax.ops import mlstm as ops_mlstm
from pallas_kernels.mlstm_chunkwise import api as kernel_api
from tests.helpers import assert_close_scaled, layernorm_loss, random_state


def _tolerances(dtype, gates):
    if dtype != "float32":
        return 2e-2, 1e-1
    return (2e-4, 2e-4) if gates == "forget" else (2e-5, 5e-5)


GATES = {
    "normal": (3.0, 1.0, 0.0, 1.0),  # f ~ N(3, 1), i ~ N(0, 1): the mlstm_kernels regime
    "forget": (-5.0, 1.0, 0.0, 15.0),  # strong forgetting, i at the soft-cap edges (+-15)
    "xlstm7b": (4.5, 1.0, -10.0, 1.0),  # the 7B input-gate bias
}


def _inputs(seed, S, DHQK, DHV, gates, dtype, B=1, NH=2):
    f_mean, f_std, i_mean, i_std = GATES[gates]
    rng = np.random.default_rng(seed)
    q, k = (rng.normal(size=(B, NH, S, DHQK)) for _ in range(2))
    v = rng.normal(size=(B, NH, S, DHV))
    f = rng.normal(f_mean, f_std, size=(B, NH, S))
    i = rng.normal(i_mean, 1.0, size=(B, NH, S)) if gates != "forget" else i_std * np.sign(rng.normal(size=(B, NH, S)))
    if gates == "forget":
        f[..., ::37] = -25.0  # the reset value of the references
    qkv = tuple(jnp.asarray(x, dtype) for x in (q, k, v))
    return (*qkv, jnp.asarray(i, jnp.float32), jnp.asarray(f, jnp.float32))


def _state(seed, DHQK, DHV, B=1, NH=2):
    C, n, m = random_state(seed, B, NH, DHQK, DHV, np.float32)
    return ops.MLSTMState(jnp.asarray(C) * 0.3, jnp.asarray(n) * 0.3, jnp.asarray(m))


def _run(kernel, chunk_size, with_state):
    """jitted (h, last state, grads of a per-head-LayerNorm loss w.r.t. q, k, v, i, f and C0)."""

    def forward(q, k, v, i, f, state):
        return ops.mlstm_chunkwise(q, k, v, i, f, chunk_size=chunk_size, initial_state=state,
                                   return_last_state=True, kernel=kernel)

    def loss(q, k, v, i, f, C0, state):
        state = state._replace(C=C0) if with_state else None
        h, last = forward(q, k, v, i, f, state)
        return layernorm_loss(h, eps=1e-10), (h, last)

    grad = jax.grad(loss, argnums=(0, 1, 2, 3, 4, 5), has_aux=True)
    return jax.jit(grad)


CASES = [
    # S, DHQK, DHV, chunk, dtype, initial state, gates
    (16, 16, 16, 16, "float32", False, "normal"),
    (100, 16, 64, 16, "float32", True, "normal"),
    (256, 64, 64, 64, "float32", True, "forget"),
    (256, 128, 256, 128, "float32", False, "normal"),
    (1000, 64, 16, 128, "float32", True, "xlstm7b"),
    (1000, 16, 64, 64, "float32", False, "forget"),
    (100, 48, 40, 16, "float32", True, "normal"),  # head dims padded to 64 and masked
    (256, 64, 128, 64, "bfloat16", True, "normal"),
    (1000, 128, 256, 128, "bfloat16", False, "forget"),
    (100, 16, 16, 16, "float16", True, "xlstm7b"),
]
MOSAIC_CASES = [  # 16-bit only; chunks >= 64; head dims padded to multiples of 64
    (256, 64, 128, 64, "bfloat16", True, "normal"),
    (300, 128, 192, 128, "bfloat16", False, "forget"),
    (100, 48, 40, 64, "float16", True, "xlstm7b"),
    (128, 512, 256, 64, "bfloat16", True, "normal"),  # the widest head dims: 8 tiles of 64
]
KERNEL_CASES = [("pallas_triton", *c) for c in CASES] + [
    pytest.param("pallas_mosaic", *c, marks=pytest.mark.mosaic) for c in MOSAIC_CASES]


def _ids(cases):
    return ["-".join(map(str, c.values if hasattr(c, "values") else c)) for c in cases]


@pytest.mark.parametrize("kernel,S,DHQK,DHV,chunk,dtype,with_state,gates", KERNEL_CASES, ids=_ids(KERNEL_CASES))
def test_kernel_matches_xla(kernel, S, DHQK, DHV, chunk, dtype, with_state, gates):
    args = _inputs(S + DHQK, S, DHQK, DHV, gates, dtype)
    state = _state(S, DHQK, DHV)
    # The reference sees the same (rounded) inputs in float32.
    ref_args = tuple(x.astype(jnp.float32) for x in args)
    g_ref, (h_ref, last_ref) = _run("xla", chunk, with_state)(*ref_args, state.C, state)
    g_ker, (h_ker, last_ker) = _run(kernel, chunk, with_state)(*args, state.C, state)
    tol_fw, tol_bw = _tolerances(dtype, gates)
    assert h_ker.dtype == jnp.dtype(dtype) and h_ker.shape == (1, 2, S, DHV)
    assert_close_scaled(h_ker, h_ref, tol_fw, "h")
    for name, a, b in zip("Cnm", last_ker, last_ref):
        assert a.dtype == jnp.float32
        assert_close_scaled(a, b, tol_fw, f"last {name}")
    for name, a, b in zip(["dq", "dk", "dv", "di", "df", "dC0"], g_ker, g_ref):
        if name == "dC0" and not with_state:
            continue
        assert_close_scaled(a, b, tol_bw, name)


BACKENDS = [("pallas_triton", "float32", 32), pytest.param("pallas_mosaic", "bfloat16", 64, marks=pytest.mark.mosaic)]


@pytest.mark.parametrize("kernel,dtype,chunk", BACKENDS)
def test_resets_match_xla(kernel, dtype, chunk):
    """Packed documents: the kernels' reset (log f = -80) against the reference's exact -inf."""
    S = 200
    args = _inputs(7, S, 32, 32, "normal", dtype, B=2)
    resets = np.zeros((2, S), bool)
    resets[0, [50, 51, 130]] = True
    resets[1, 199] = True
    resets = jnp.asarray(resets)

    def run(kernel):
        def loss(q, k, v, i, f):
            h = ops.mlstm_chunkwise(q, k, v, i, f, chunk_size=64, resets=resets, kernel=kernel)
            return layernorm_loss(h, eps=1e-10), h
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4), has_aux=True))(*inputs)

    inputs = tuple(x.astype(jnp.float32) for x in args)
    g_ref, h_ref = run("xla")
    inputs = args
    g_ker, h_ker = run(kernel)
    tol_fw, tol_bw = _tolerances(dtype, "normal")
    assert_close_scaled(h_ker, h_ref, tol_fw, "h")
    for name, a, b in zip(["dq", "dk", "dv", "di", "df"], g_ker, g_ref):
        assert_close_scaled(a, b, tol_bw, name)
    assert float(jnp.max(jnp.abs(g_ker[4][0, :, [50, 51, 130]]))) == 0.0  # a reset forgets regardless of f


@pytest.mark.parametrize("kernel,dtype,chunk", BACKENDS)
def test_state_passing_composes_exactly(kernel, dtype, chunk):
    """Two kernel calls with the state carried between them equal one call, and so do their gradients
    (the backward treats m as a constant on both sides of the boundary, which composes exactly)."""
    S, cut = 192, 80
    args = _inputs(3, S, 32, 64, "normal", dtype)
    state = _state(4, 32, 64)
    tol_fw, tol_bw = _tolerances(dtype, "normal")

    def split_loss(name):
        def loss(q, k, v, i, f, C0):
            run = lambda sl, st: ops.mlstm_chunkwise(  # noqa: E731
                *(x[:, :, sl] for x in (q, k, v, i, f)), chunk_size=chunk, initial_state=st,
                return_last_state=True, kernel=name)
            h1, mid = run(slice(0, cut), state._replace(C=C0))
            h2, last = run(slice(cut, S), mid)
            return layernorm_loss(jnp.concatenate([h1, h2], axis=2), eps=1e-10), (h1, h2, last)
        inputs = args if name != "xla" else tuple(x.astype(jnp.float32) for x in args)
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4, 5), has_aux=True))(*inputs, state.C)

    g_ker, (h1, h2, last) = split_loss(kernel)
    g_ref, _ = split_loss("xla")
    h_full, last_full = ops.mlstm_chunkwise(*args, chunk_size=chunk, initial_state=state, return_last_state=True,
                                            kernel=kernel)
    assert_close_scaled(jnp.concatenate([h1, h2], axis=2), h_full, tol_fw, "h split vs full")
    for name, a, b in zip("Cnm", last, last_full):
        assert_close_scaled(a, b, tol_fw, f"last {name}")
    for name, a, b in zip(["dq", "dk", "dv", "di", "df", "dC0"], g_ker, g_ref):
        assert_close_scaled(a, b, tol_bw, name)


H100 = jax.sharding.AbstractDevice(device_kind="NVIDIA H100 80GB HBM3", num_cores=None, platform="gpu")


def _gpu_lowering(fn, *args, call="__gpu$xla.gpu.triton"):
    """How many kernel calls (``call``: Triton's, or Mosaic GPU's ``mosaic_gpu_v2``) ``fn`` lowers to for
    CUDA, on this CPU machine: under an abstract GPU mesh (jax >= 0.12 refuses to lower for CUDA without
    a GPU or an abstract GPU device). JAX >= 0.11 deprecates Pallas's Triton backend at lowering; the
    warning is expected here (docs/kernels.md)."""
    triton = call == "__gpu$xla.gpu.triton" and jax.__version_info__ >= (0, 11)
    expect = pytest.warns(DeprecationWarning, match="Pallas Triton backend is deprecated") if triton else (
        contextlib.nullcontext())
    with jax.sharding.use_abstract_mesh(jax.sharding.AbstractMesh((1,), ("x",), abstract_device=H100)), expect:
        text = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    return text.count(call)


@pytest.mark.parametrize("backend,dtype", [("triton", jnp.float32), ("triton", jnp.bfloat16),
                                           pytest.param("mosaic", jnp.bfloat16, marks=pytest.mark.mosaic(jax=(0, 11)))])
def test_kernels_lower_for_cuda(backend, dtype):
    """Forward and backward lower for CUDA through Pallas's Triton or Mosaic GPU backend (checked on CPU;
    Mosaic GPU's lowering checks TMA constraints, e.g. 16-byte row strides)."""
    B, NH, S, DHQK, DHV = 2, 4, 300, 96, 200  # padded S, padded head dims
    q = jax.ShapeDtypeStruct((B, NH, S, DHQK), dtype)
    v = jax.ShapeDtypeStruct((B, NH, S, DHV), dtype)
    gate = jax.ShapeDtypeStruct((B, NH, S), jnp.float32)
    state = (jax.ShapeDtypeStruct((B, NH, DHQK, DHV), jnp.float32),
             jax.ShapeDtypeStruct((B, NH, DHQK), jnp.float32), jax.ShapeDtypeStruct((B, NH), jnp.float32))

    def forward(q, k, v, i, f, state):
        return pallas_kernels.mlstm_chunkwise(q, k, v, i, f, chunk_size=64, initial_state=state,
                                              return_last_state=True, interpret=False, backend=backend)

    def loss(*args):
        h, (C, _, _) = forward(*args)
        return layernorm_loss(h) + jnp.sum(C**2)

    call = "mosaic_gpu_v2" if backend == "mosaic" else "__gpu$xla.gpu.triton"
    assert _gpu_lowering(forward, q, q, v, gate, gate, state, call=call) == 2  # chunk states, outputs
    # forward + backward: states, outputs, recomputed states, dC recurrence, dQ, dK, dV
    assert _gpu_lowering(jax.grad(loss, argnums=(0, 1, 2, 3, 4, 5)), q, q, v, gate, gate, state, call=call) == 7


def test_bad_inputs_raise():
    args = _inputs(0, 64, 16, 16, "normal", "float32")
    with pytest.raises(ValueError, match="power of two >= 16"):
        pallas_kernels.mlstm_chunkwise(*args, chunk_size=48)
    with pytest.raises(ValueError, match="power of two >= 16"):
        pallas_kernels.mlstm_chunkwise(*args, chunk_size=8)
    with pytest.raises(TypeError, match="share a dtype"):
        pallas_kernels.mlstm_chunkwise(args[0], args[1], args[2].astype(jnp.bfloat16), *args[3:])
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        pallas_kernels.mlstm_chunkwise(*(x.astype(jnp.int32) for x in args[:3]), *args[3:])
    with pytest.raises(ValueError, match="initial_state shapes"):
        pallas_kernels.mlstm_chunkwise(*args, initial_state=_state(0, 16, 32))
    with pytest.raises(ValueError, match="BlockSizes.block_q"):
        pallas_kernels.BlockSizes(block_q=24)
    with pytest.raises(ValueError, match="backend must be one of"):
        pallas_kernels.mlstm_chunkwise(*args, backend="cuda")
    with pytest.raises(TypeError, match="bfloat16 or float16 inputs, got float32 .wgmma has no IEEE float32 mode"):
        pallas_kernels.mlstm_chunkwise(*args, chunk_size=64, backend="mosaic")
    half = tuple(x.astype(jnp.bfloat16) for x in args[:3]) + args[3:]
    if jax.__version_info__ < (0, 12):  # GPU interpret mode runs wgmma from jax 0.12
        with pytest.raises(RuntimeError, match="Mosaic GPU kernels need jax >= 0.12 in interpret mode"):
            pallas_kernels.mlstm_chunkwise(*half, chunk_size=64, backend="mosaic", interpret=True)
    with pytest.raises(ValueError, match="power of two >= 64 for the mosaic kernels"):
        pallas_kernels.mlstm_chunkwise(*half, chunk_size=32, backend="mosaic")


def test_auto_uses_xla_off_gpu(monkeypatch):
    """On CPU, ``auto`` never touches the kernels."""
    def broken(*args, **kwargs):
        raise AssertionError("the kernel must not run on CPU under kernel='auto'")

    monkeypatch.setattr(pallas_kernels, "mlstm_chunkwise", broken)
    args = _inputs(1, 40, 16, 16, "normal", "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = ops.mlstm_chunkwise(*args, kernel="auto")
    np.testing.assert_array_equal(h, ops.mlstm_chunkwise(*args, kernel="xla"))


def test_auto_dispatches_by_gpu_capability_and_shape(monkeypatch):
    """On a GPU, ``auto`` takes the kernels where the compile tier proves them (A100, H100 / H200; head
    dims up to 512; power-of-two chunks 16-1024) and XLA elsewhere, with one warning per reason, under
    jit too. Faked here: the capability, and the kernels interpreted on CPU."""
    calls = []
    real = pallas_kernels.mlstm_chunkwise
    monkeypatch.setattr(pallas_kernels, "mlstm_chunkwise", lambda *a, **k: calls.append(1) or real(*a, **k))
    ops_mlstm._FALLBACK_WARNED.clear()
    args = _inputs(2, 40, 16, 16, "normal", "float32")
    expected = ops.mlstm_chunkwise(*args, chunk_size=16, kernel="xla")
    monkeypatch.setattr(ops_mlstm, "_gpu_capability", lambda: "7.5")  # a T4
    with pytest.warns(RuntimeWarning, match="compute capability 7.5.*using the XLA chunkwise form") as record:
        h = jax.jit(lambda *a: ops.mlstm_chunkwise(*a, chunk_size=16, kernel="auto"))(*args)
        h2 = ops.mlstm_chunkwise(*(x[:, :, :30] for x in args), chunk_size=16, kernel="auto")
    assert len(record) == 1 and not calls
    np.testing.assert_array_equal(h, expected)
    np.testing.assert_array_equal(h2, ops.mlstm_chunkwise(*(x[:, :, :30] for x in args), chunk_size=16,
                                                          kernel="xla"))
    monkeypatch.setattr(ops_mlstm, "_gpu_capability", lambda: "9.0")  # an H100
    with pytest.warns(RuntimeWarning, match="chunk_size 24"):
        ops.mlstm_chunkwise(*args, chunk_size=24, kernel="auto")
    assert not calls
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        h = ops.mlstm_chunkwise(*args, chunk_size=16, kernel="auto")
    assert calls
    assert_close_scaled(h, expected, 2e-5, "h")
    for capability, dtype, dims, chunk, reason in [
        (None, "float32", (64, 64), 64, "not on an NVIDIA GPU"), ("8.6", "bfloat16", (64, 64), 64, "8.6"),
        ("8.0", "float64", (64, 64), 64, "float64"), ("9.0", "bfloat16", (1024, 64), 64, "head dims 1024"),
        ("9.0", "bfloat16", (64, 64), 2048, "chunk_size 2048"), ("8.0", "float16", (512, 512), 1024, None),
    ]:
        got = ops_mlstm._triton_refusal(capability, jnp.dtype(dtype), *dims, chunk)
        assert got is None if reason is None else reason in got, (capability, dtype, dims, chunk, got)


def test_auto_takes_mosaic_only_where_proven(monkeypatch):
    """``auto`` prefers the Mosaic GPU kernels on a GPU listed in ``MOSAIC_GPUS`` for 16-bit inputs and
    chunks >= 64, the Triton kernels for the rest; with no GPU listed (today) it never takes them."""
    path = ops_mlstm.chunkwise_path
    monkeypatch.setattr(ops_mlstm, "_gpu_capability", lambda: "9.0")
    assert path("auto", jnp.bfloat16, 128, 256, 64) == ("pallas_triton", None)
    monkeypatch.setattr(ops_mlstm, "MOSAIC_GPUS", {"9.0": "H100 / H200"})
    assert path("auto", jnp.bfloat16, 128, 256, 64) == ("pallas_mosaic", None)
    assert path("auto", jnp.float16, 512, 512, 1024) == ("pallas_mosaic", None)
    assert path("auto", jnp.float32, 128, 256, 64) == ("pallas_triton", None)  # wgmma has no IEEE float32
    assert path("auto", jnp.bfloat16, 128, 256, 32) == ("pallas_triton", None)
    assert path("pallas_triton", jnp.bfloat16, 128, 256, 64) == ("pallas_triton", None)
    assert path("xla", jnp.bfloat16, 128, 256, 64) == ("xla", None)
    monkeypatch.setattr(ops_mlstm, "_gpu_capability", lambda: "8.0")
    assert path("auto", jnp.bfloat16, 128, 256, 64) == ("pallas_triton", None)
    for dtype, dims, chunk, reason in [("float32", (64, 64), 64, "float32 inputs"), ("bfloat16", (1024, 64), 64,
                                       "head dims 1024"), ("bfloat16", (64, 64), 32, "chunk_size 32")]:
        assert reason in ops_mlstm._mosaic_refusal("9.0", jnp.dtype(dtype), *dims, chunk)


@pytest.mark.parametrize("kernel,dtype,chunk", BACKENDS)
def test_model_with_kernels_matches_xla(kernel, dtype, chunk):
    """An XLSTMLM whose mLSTM layers run the kernels: same logits and parameter gradients (bfloat16
    activations for Mosaic GPU: against the same model on XLA, 2e-2)."""
    from bioxlstm_jax.nn import XLSTMLM, XLSTMConfig

    cfg = XLSTMConfig(vocab_size=12, embedding_dim=32, num_blocks=2, slstm_at=(1,), mlstm_num_heads=2,
                      chunk_size=16 if kernel == "pallas_triton" else 64, kernel="xla", dtype=dtype)
    tokens = jax.random.randint(jax.random.key(0), (2, 50), 0, 12)
    params = XLSTMLM(cfg).init(jax.random.key(1), tokens)

    def run(kernel):
        model = XLSTMLM(cfg.replace(kernel=kernel))
        loss = lambda p: jnp.mean(jax.nn.log_softmax(model.apply(p, tokens))[..., 0])  # noqa: E731
        return jax.jit(jax.value_and_grad(loss))(params)

    (l_ref, g_ref), (l_ker, g_ker) = run("xla"), run(kernel)
    tol = 1e-4 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(l_ker, l_ref, rtol=tol / 100)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_ker), jax.tree.leaves(g_ref)):
        assert_close_scaled(a, b, tol, jax.tree_util.keystr(path))


@pytest.mark.gpu
@pytest.mark.parametrize("kernel,S,DHQK,DHV,chunk,dtype,with_state,gates", KERNEL_CASES, ids=_ids(KERNEL_CASES))
def test_compiled_kernel_matches_xla_on_gpu(kernel, S, DHQK, DHV, chunk, dtype, with_state, gates):
    """The same comparisons with the kernels compiled by Triton or Mosaic GPU on a GPU."""
    if jax.default_backend() != "gpu":
        pytest.fail("the gpu-marked tests need a GPU (run them with `pytest -m gpu` on one)")
    if kernel == "pallas_mosaic" and not ops_mlstm._gpu_capability().startswith("9."):
        pytest.skip("the Mosaic GPU kernels use wgmma: Hopper (compute capability 9.x) only")
    assert not kernel_api.default_interpret()
    test_kernel_matches_xla(kernel, S, DHQK, DHV, chunk, dtype, with_state, gates)


@pytest.mark.gpu
def test_auto_picks_kernel_on_gpu(monkeypatch):
    if jax.default_backend() != "gpu":
        pytest.fail("the gpu-marked tests need a GPU (run them with `pytest -m gpu` on one)")
    calls = []
    real = pallas_kernels.mlstm_chunkwise
    monkeypatch.setattr(pallas_kernels, "mlstm_chunkwise", lambda *a, **k: calls.append(1) or real(*a, **k))
    args = _inputs(5, 512, 64, 128, "normal", "bfloat16")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        h = ops.mlstm_chunkwise(*args, chunk_size=64, kernel="auto")
    assert calls, "kernel='auto' did not use the kernel on GPU"
    assert_close_scaled(h, ops.mlstm_chunkwise(*(x.astype(jnp.float32) for x in args), kernel="xla"), 2e-2, "h")


def test_benchmark_script_runs_on_cpu(tmp_path):
    """``benchmarks/mlstm_kernel.py`` end to end at a tiny size: XLA timed, the rest reported as such."""
    import json
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    out = tmp_path / "mlstm_kernel_cpu.json"
    subprocess.run([sys.executable, "benchmarks/mlstm_kernel.py", "--config.seq_lens=128", "--config.tokens=256",
                    "--config.heads=2", "--config.dhqk=16", "--config.dhv=32", "--config.dtype=float32",
                    "--config.chunk=32", "--config.reps=2", "--config.impls=xla,pallas_triton", f"--workdir={tmp_path}"],
                   cwd=root, check=True, timeout=300)
    record = json.loads(out.read_text())
    assert record["device"] and record["versions"]["jax"] == jax.__version__ and record["date"]
    xla, pallas = record["results"]
    assert pallas["impl"] == "pallas_triton"
    assert xla["impl"] == "xla" and xla["fw_ms"] > 0 and xla["fwbw_ms"] > 0 and xla["fwbw_tflops"] > 0
    assert xla["fw_flops"] == 256 * 2 * (4 * 16 * 32 + 32 * (16 + 32))
    assert "not timed" in pallas["error"]
