"""The mLSTM forms agree with each other: float64 exactly, float32 to rounding, with states, resets,
extreme gates, gradients and bf16 inputs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from bioxlstm_jax.ops import MLSTMState, mlstm_chunkwise, mlstm_parallel, mlstm_recurrent, mlstm_step
from tests.helpers import assert_close_scaled, layernorm_loss, max_abs, mlstm_inputs, random_state


def _to(dtype, arrays):
    return tuple(jnp.asarray(x, dtype) for x in arrays)


@pytest.mark.parametrize("chunk_size", [16, 64, 128])
def test_forms_agree_float64(chunk_size):
    """S = 200 is not divisible by any chunk size; eps = 0 makes all forms mathematically identical."""
    with jax.enable_x64(True):
        args = _to(jnp.float64, mlstm_inputs(0, S=200, DHQK=16, DHV=24))
        h_par = mlstm_parallel(*args, eps=0.0)
        h_rec, s_rec = mlstm_recurrent(*args, eps=0.0)
        h_chk, s_chk = mlstm_chunkwise(*args, eps=0.0, chunk_size=chunk_size, return_last_state=True)
        assert h_chk.dtype == jnp.float64 and s_chk.C.dtype == jnp.float64
        chex.assert_shape(h_chk, (2, 2, 200, 24))
        chex.assert_trees_all_close(h_rec, h_par, atol=1e-10, rtol=0)
        chex.assert_trees_all_close(h_chk, h_par, atol=1e-10, rtol=0)
        chex.assert_trees_all_close(s_chk, s_rec, atol=1e-12, rtol=0)


@pytest.mark.parametrize("chunk_size", [16, 64, 128])
def test_forms_agree_float32(chunk_size):
    args64 = mlstm_inputs(1, S=200, DHQK=16, DHV=24)
    with jax.enable_x64(True):
        h_ref = np.asarray(mlstm_parallel(*_to(jnp.float64, args64)))
    args = _to(jnp.float32, args64)
    h_par = mlstm_parallel(*args)
    h_rec, _ = mlstm_recurrent(*args)
    h_chk = mlstm_chunkwise(*args, chunk_size=chunk_size)
    assert h_par.dtype == h_rec.dtype == h_chk.dtype == jnp.float32
    for name, h in (("parallel", h_par), ("recurrent", h_rec), ("chunkwise", h_chk)):
        assert_close_scaled(h, h_ref, 1e-5, name)
    assert_close_scaled(h_chk, h_rec, 1e-5, "chunkwise vs recurrent")


def test_float64_eps_effect_is_tiny():
    """With the default eps the forms differ only through eps * exp(m) (their stabilizers differ)."""
    with jax.enable_x64(True):
        args = _to(jnp.float64, mlstm_inputs(2, S=96))
        h_par = mlstm_parallel(*args)
        h_rec, _ = mlstm_recurrent(*args)
        h_chk = mlstm_chunkwise(*args, chunk_size=32)
        assert max_abs(h_chk, h_rec) < 1e-12  # same stabilizer: chunkwise m_comb == recurrent m_t
        assert 0 < max_abs(h_par, h_rec) < 1e-5


@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-12), (jnp.float32, 1e-5)])
@pytest.mark.parametrize("split,chunk_size", [(100, 16), (64, 64), (37, 128)])
def test_chunkwise_state_passing(dtype, tol, split, chunk_size):
    with jax.enable_x64(dtype == jnp.float64):
        args = _to(dtype, mlstm_inputs(3, S=230))
        init = MLSTMState(*_to(dtype, random_state(4, 2, 2, 16, 32)))
        h_full, s_full = mlstm_chunkwise(*args, chunk_size=chunk_size, initial_state=init, return_last_state=True)
        first = tuple(x[:, :, :split] for x in args)
        second = tuple(x[:, :, split:] for x in args)
        h1, s1 = mlstm_chunkwise(*first, chunk_size=chunk_size, initial_state=init, return_last_state=True)
        h2, s2 = mlstm_chunkwise(*second, chunk_size=chunk_size, initial_state=s1, return_last_state=True)
        assert_close_scaled(jnp.concatenate([h1, h2], axis=2), h_full, tol, "h")
        for name, a, b in zip("Cnm", s2, s_full):
            assert_close_scaled(a, b, tol, name)


@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-12), (jnp.float32, 1e-5)])
def test_recurrent_and_chunkwise_final_states_agree(dtype, tol):
    with jax.enable_x64(dtype == jnp.float64):
        args = _to(dtype, mlstm_inputs(5, S=150, DHQK=32, DHV=16))
        init = MLSTMState(*_to(dtype, random_state(6, 2, 2, 32, 16)))
        h_rec, s_rec = mlstm_recurrent(*args, initial_state=init)
        h_chk, s_chk = mlstm_chunkwise(*args, chunk_size=64, initial_state=init, return_last_state=True)
        assert s_chk.C.dtype == dtype
        chex.assert_shape(s_chk, MLSTMState((2, 2, 32, 16), (2, 2, 32), (2, 2)))
        assert_close_scaled(h_chk, h_rec, tol, "h")
        for name, a, b in zip("Cnm", s_chk, s_rec):
            assert_close_scaled(a, b, tol, name)


def test_step_matches_recurrent():
    args = _to(jnp.float32, mlstm_inputs(7, S=12))
    h_rec, s_rec = mlstm_recurrent(*args)
    state = None
    for t in range(12):
        h_t, state = mlstm_step(*(x[:, :, t] for x in args), state)
        chex.assert_trees_all_close(h_t, h_rec[:, :, t], atol=1e-6, rtol=1e-6)
    chex.assert_trees_all_close(state, s_rec, atol=1e-6, rtol=1e-6)


def _packed(seed, S1, S2, dtype):
    a = mlstm_inputs(seed, B=1, S=S1)
    b = mlstm_inputs(seed + 1, B=1, S=S2)
    packed = tuple(np.concatenate([x, y], axis=2) for x, y in zip(a, b))
    return _to(dtype, a), _to(dtype, b), _to(dtype, packed)


@pytest.mark.parametrize("S1,S2,chunk_size", [(50, 90, 32), (64, 64, 64), (7, 120, 128)])
def test_resets_equal_fresh_runs_float64(S1, S2, chunk_size):
    """Outputs after a reset equal a fresh run on that document; before it, a run on the first one."""
    with jax.enable_x64(True):
        doc1, doc2, packed = _packed(10, S1, S2, jnp.float64)
        init = MLSTMState(*_to(jnp.float64, random_state(11, 1, 2, 16, 32)))
        resets = np.zeros((1, S1 + S2), bool)
        resets[:, S1] = True
        h, last = mlstm_chunkwise(
            *packed, chunk_size=chunk_size, resets=resets, initial_state=init, eps=0.0, return_last_state=True
        )
        h1 = mlstm_chunkwise(*doc1, chunk_size=chunk_size, initial_state=init, eps=0.0)
        h2, last2 = mlstm_chunkwise(*doc2, chunk_size=chunk_size, eps=0.0, return_last_state=True)
        chex.assert_trees_all_close(h[:, :, :S1], h1, atol=1e-10, rtol=0)
        chex.assert_trees_all_close(h[:, :, S1:], h2, atol=1e-10, rtol=0)
        # Same memory (true units exp(m) * C), possibly another stabilizer m.
        true = lambda s: (s.C * jnp.exp(s.m)[..., None, None], s.n * jnp.exp(s.m)[..., None])  # noqa: E731
        chex.assert_trees_all_close(true(last), true(last2), atol=1e-9, rtol=1e-10)


def test_resets_float32_batch_and_edge_cases():
    """Per-row reset positions in one batch; a reset at t = 0 drops the initial state; no resets == None."""
    S = 160
    rows = [(40, 120), (100, 60)]
    docs = [_packed(20 + 2 * r, S1, S2, jnp.float32) for r, (S1, S2) in enumerate(rows)]
    packed = tuple(jnp.concatenate([d[2][j] for d in docs], axis=0) for j in range(5))
    resets = np.zeros((2, S), bool)
    for r, (S1, _) in enumerate(rows):
        resets[r, S1] = True
    h = mlstm_chunkwise(*packed, chunk_size=64, resets=resets)
    for r, (S1, _) in enumerate(rows):
        h2 = mlstm_chunkwise(*docs[r][1], chunk_size=64)
        assert_close_scaled(h[r : r + 1, :, S1:], h2, 1e-5, f"row {r}")
    init = MLSTMState(*_to(jnp.float32, random_state(30, 2, 2, 16, 32)))
    at_zero = np.zeros((2, S), bool)
    at_zero[:, 0] = True
    chex.assert_trees_all_close(
        mlstm_chunkwise(*packed, resets=at_zero, initial_state=init), mlstm_chunkwise(*packed), atol=1e-5, rtol=1e-5
    )
    chex.assert_trees_all_equal(
        mlstm_chunkwise(*packed, resets=np.zeros((2, S), bool)), mlstm_chunkwise(*packed)
    )


def test_extreme_gates_float32_finite_and_accurate():
    """i~ at +-15, f~ at -25 / +25 (resets and saturation), S = 4096: float32 stays finite and matches float64."""
    rng = np.random.default_rng(41)
    i = rng.choice([-15.0, 15.0], size=(1, 2, 4096))
    f = rng.choice([-25.0, 25.0], size=(1, 2, 4096))
    q, k, v = (rng.normal(size=(1, 2, 4096, 16)).astype(np.float32) for _ in range(3))
    for h in (mlstm_chunkwise(q, k, v, i, f), mlstm_recurrent(q, k, v, i, f)[0], mlstm_parallel(q, k, v, i, f)):
        assert np.all(np.isfinite(np.asarray(h)))

    rng = np.random.default_rng(40)
    B, NH, S, D = 1, 2, 4096, 16
    # Positive q, k: n.q cannot cancel, so h is a weighted mean of the v's and the comparison measures the
    # gate arithmetic, not the conditioning of a near-zero normalizer (which no float32 form can fix).
    q, k = (np.abs(rng.normal(size=(B, NH, S, D))) for _ in range(2))
    v = rng.normal(size=(B, NH, S, D))
    i = rng.choice([-15.0, 15.0], size=(B, NH, S)) + rng.normal(size=(B, NH, S)) * 0.1
    f = rng.choice([-25.0, 25.0, 3.0], size=(B, NH, S), p=[0.05, 0.5, 0.45])
    args64 = (q, k, v, i, f)
    with jax.enable_x64(True):
        h_ref, s_ref = mlstm_recurrent(*_to(jnp.float64, args64))
        h_ref, s_ref = np.asarray(h_ref), jax.tree.map(np.asarray, s_ref)
    args = _to(jnp.float32, args64)
    h_chk, s_chk = mlstm_chunkwise(*args, chunk_size=64, return_last_state=True)
    h_rec, s_rec = mlstm_recurrent(*args)
    h_par = mlstm_parallel(*args)
    for name, h in (("chunkwise", h_chk), ("recurrent", h_rec), ("parallel", h_par)):
        assert np.all(np.isfinite(np.asarray(h))), name
        assert_close_scaled(h, h_ref, 1e-5, name)
    for s in (s_chk, s_rec):
        assert all(np.all(np.isfinite(np.asarray(x))) for x in s)
        assert_close_scaled(s.m, s_ref.m, 1e-6, "m")
        assert_close_scaled(s.n, s_ref.n, 1e-5, "n")


def _loss(fn, seed=0):
    return lambda *args: layernorm_loss(fn(*args), seed)


@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-10), (jnp.float32, 1e-4)])
def test_chunkwise_gradients_match_parallel(dtype, tol):
    """Through a per-head LayerNorm loss, d/d(q, k, v, i, f) of chunkwise equals that of parallel (eps = 0)."""
    with jax.enable_x64(dtype == jnp.float64):
        args = _to(dtype, mlstm_inputs(50, S=100, DHQK=16, DHV=32))
        g_par = jax.grad(_loss(lambda *a: mlstm_parallel(*a, eps=0.0)), argnums=range(5))(*args)
        g_chk = jax.grad(_loss(lambda *a: mlstm_chunkwise(*a, chunk_size=32, eps=0.0)), argnums=range(5))(*args)
        g_rec = jax.grad(_loss(lambda *a: mlstm_recurrent(*a, eps=0.0)[0]), argnums=range(5))(*args)
        for name, a, b, c in zip("qkvif", g_chk, g_par, g_rec):
            assert_close_scaled(a, b, tol, f"d{name} chunkwise vs parallel")
            assert_close_scaled(a, c, tol, f"d{name} chunkwise vs recurrent")


def test_chunkwise_numerical_gradient():
    """Finite differences (float64) through q, k, v, i, f and the initial state, with a reset."""
    with jax.enable_x64(True):
        q, k, v, i, f = _to(jnp.float64, mlstm_inputs(60, B=1, NH=1, S=11, DHQK=4, DHV=3))
        init = MLSTMState(*_to(jnp.float64, random_state(61, 1, 1, 4, 3)))
        resets = np.zeros((1, 11), bool)
        resets[0, 8] = True

        def fn(q, k, v, i, f, C, n, m):
            h, s = mlstm_chunkwise(
                q, k, v, i, f, chunk_size=4, initial_state=MLSTMState(C, n, m), resets=resets, return_last_state=True
            )
            return layernorm_loss(h) + jnp.sum(s.C * jnp.exp(s.m)[..., None, None] * 0.1)

        check_grads(fn, (q, k, v, i, f, *init), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def _xla_chunkwise_grads(recompute, args, init, resets, chunk_size, return_last_state, eps=1e-6):
    """Gradients of a per-head LayerNorm loss (plus the last state when returned) w.r.t. q, k, v, i, f
    and the initial state, through the XLA chunkwise form with (``recompute``) or without its custom VJP."""
    from bioxlstm_jax.ops.mlstm import _mlstm_chunkwise_xla

    def loss(q, k, v, i, f, C, n, m):
        h, last = _mlstm_chunkwise_xla(q, k, v, i, f, resets, MLSTMState(C, n, m), chunk_size=chunk_size,
                                       eps=eps, recompute=recompute)
        normed = (h - h.mean(-1, keepdims=True)) / jnp.sqrt(h.var(-1, keepdims=True) + 1e-5)  # per-head LayerNorm
        offset = np.random.default_rng(0).normal(size=h.shape).astype(np.float32)  # the same in both dtypes
        out = jnp.sum((normed + offset.astype(h.dtype)) ** 2)
        if return_last_state:
            out = out + jnp.sum(last.C * 0.3) + jnp.sum(last.n * 0.7) + jnp.sum(last.m)
        return out

    return jax.grad(loss, argnums=range(8))(*args, *init)


@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-8), (jnp.float32, 1e-5)])
@pytest.mark.parametrize("S,chunk_size", [(200, 16), (64, 64), (37, 128), (131, 32), (1, 8)])
@pytest.mark.parametrize("return_last_state", [False, True])
def test_chunkwise_custom_vjp_equals_autodiff(dtype, tol, S, chunk_size, return_last_state):
    """The recomputing backward (a reverse scan of per-chunk VJPs) is the exact gradient of the forward:
    normalizer and stabilizer paths included, with resets (one crossing a chunk edge), initial states,
    odd S and every chunk size; float32 within 1e-5 of the largest gradient against float64 (autodiff
    in float32 is as far: ~2e-6 here)."""
    with jax.enable_x64(dtype == jnp.float64):
        args = _to(dtype, mlstm_inputs(80, S=S, DHQK=16, DHV=24))
        init = _to(dtype, random_state(81, 2, 2, 16, 24))
        resets = np.zeros((2, S), bool)
        resets[0, S // 3] = resets[1, min(5, S - 1)] = True
        if dtype == jnp.float64:
            # float64: the reference is autodiff of the same forward.
            g_ref = _xla_chunkwise_grads(False, args, init, resets, chunk_size, return_last_state)
        else:
            with jax.enable_x64(True):
                g_ref = _xla_chunkwise_grads(False, _to(jnp.float64, args), _to(jnp.float64, init), resets,
                                             chunk_size, return_last_state)
        g = _xla_chunkwise_grads(True, args, init, resets, chunk_size, return_last_state)
        scale = max(1.0, max(float(np.max(np.abs(np.asarray(b)))) for b in g_ref))  # the gradient scale (tiny dn0 included)
        for name, a, b in zip(["q", "k", "v", "i", "f", "C0", "n0", "m0"], g, g_ref):
            assert a.dtype == dtype
            err = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
            assert err <= tol * scale, f"d{name}: {err:.2e} > {tol:.0e} x gradient scale {scale:.3g}"


def test_chunkwise_custom_vjp_through_state_passing():
    """Gradients through two calls, the second fed the first's last state, equal those of one call
    (float64), and the custom VJP saves no (NC, L, L) tensor: its buffer plan is well under autodiff's."""
    from bioxlstm_jax.ops.mlstm import _mlstm_chunkwise_xla

    with jax.enable_x64(True):
        args = _to(jnp.float64, mlstm_inputs(82, S=150, DHQK=8, DHV=8))

        def split_loss(*a):
            h1, s1 = mlstm_chunkwise(*(x[:, :, :70] for x in a), chunk_size=32, kernel="xla", return_last_state=True)
            h2 = mlstm_chunkwise(*(x[:, :, 70:] for x in a), chunk_size=32, kernel="xla", initial_state=s1)
            return layernorm_loss(jnp.concatenate([h1, h2], axis=2))

        def full_loss(*a):
            return layernorm_loss(mlstm_chunkwise(*a, chunk_size=32, kernel="xla"))

        g_split = jax.grad(split_loss, argnums=range(5))(*args)
        g_full = jax.grad(full_loss, argnums=range(5))(*args)
        for name, a, b in zip("qkvif", g_split, g_full):
            assert_close_scaled(a, b, 1e-10, f"d{name}")

    q, k, v, i, f = _to(jnp.float32, mlstm_inputs(83, B=1, NH=2, S=2048, DHQK=32, DHV=32))

    def plan(recompute):
        def fwd_bwd(*a):
            return jax.grad(lambda *x: jnp.sum(_mlstm_chunkwise_xla(*x, None, None, chunk_size=64, eps=1e-6,
                                                                    recompute=recompute)[0] ** 2),
                            argnums=range(5))(*a)
        return jax.jit(fwd_bwd).trace(q, k, v, i, f).lower().compile().memory_analysis().temp_size_in_bytes

    assert plan(True) < 0.65 * plan(False)  # measured: 6.4 MiB vs 11.1 MiB (the forward alone: 4.4)


def test_bf16_inputs():
    """bf16 in, bf16 out, float32 states; within 2e-2 (scaled) of the float32 result on the same values,
    and within 5e-2 of the float32 result on the unrounded inputs (bf16 has 8 mantissa bits)."""
    args32 = _to(jnp.float32, mlstm_inputs(70, S=130))
    args16 = tuple(x.astype(jnp.bfloat16) for x in args32)
    h16, s16 = mlstm_chunkwise(*args16, chunk_size=64, return_last_state=True)
    assert h16.dtype == jnp.bfloat16 and s16.C.dtype == jnp.float32
    h32_same = mlstm_chunkwise(*(x.astype(jnp.float32) for x in args16), chunk_size=64)
    h32 = mlstm_chunkwise(*args32, chunk_size=64)
    assert_close_scaled(h16, h32_same, 2e-2, "bf16 vs float32 on the same values")
    assert_close_scaled(h16, h32, 5e-2, "bf16 vs float32")
    assert mlstm_parallel(*args16).dtype == jnp.bfloat16
    assert mlstm_recurrent(*args16)[0].dtype == jnp.bfloat16


def test_parallel_bidirectional_matches_bruteforce():
    """causal=False: above the diagonal the decay is sum_{r=t..s-1} log f_r (DNA-xLSTM's native mask)."""
    with jax.enable_x64(True):
        q, k, v, i, f = mlstm_inputs(80, B=1, NH=2, S=9, DHQK=4, DHV=3)
        lf = -np.log1p(np.exp(-f))
        S = 9
        logD = np.empty((1, 2, S, S))
        for t in range(S):
            for s in range(S):
                logD[..., t, s] = (lf[..., s + 1 : t + 1].sum(-1) if s <= t else lf[..., t:s].sum(-1)) + i[..., s]
        m = logD.max(-1, keepdims=True)
        scores = np.einsum("bhtd,bhsd->bhts", q, k / 2.0) * np.exp(logD - m)
        norm = np.maximum(np.abs(scores.sum(-1, keepdims=True)), np.exp(-m)) + 1e-6
        expected = np.einsum("bhts,bhsd->bhtd", scores / norm, v)
        chex.assert_trees_all_close(
            mlstm_parallel(*_to(jnp.float64, (q, k, v, i, f)), causal=False), expected, atol=1e-12, rtol=0
        )
        # ... and the causal part is untouched: the last position sees the whole sequence either way.
        h_c = mlstm_parallel(*_to(jnp.float64, (q, k, v, i, f)))
        chex.assert_trees_all_close(h_c[:, :, -1], expected[:, :, -1], atol=1e-12, rtol=0)


def test_jit_and_traces():
    """Functions are jitted; repeated calls with the same shapes do not retrace."""
    args = _to(jnp.float32, mlstm_inputs(90, S=40))
    counted = jax.jit(chex.assert_max_traces(lambda *a: mlstm_chunkwise(*a, chunk_size=16), n=1))
    counted(*args)
    counted(*args)
    counted(*(x + 1 for x in args))


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(k=np.zeros((2, 2, 64, 8))), "k must have the shape of q"),
        (dict(i=np.zeros((2, 2, 63))), "gate pre-activation i"),
        (dict(v=np.zeros((2, 3, 64, 32))), "v must be"),
    ],
)
def test_bad_shapes_raise(bad, match):
    args = dict(zip("qkvif", _to(jnp.float32, mlstm_inputs(0))))
    args.update({key: jnp.asarray(val, jnp.float32) for key, val in bad.items()})
    with pytest.raises(ValueError, match=match):
        mlstm_chunkwise(*args.values())
    with pytest.raises(ValueError, match=match):
        mlstm_parallel(*args.values())


def test_bad_options_raise():
    args = _to(jnp.float32, mlstm_inputs(0))
    with pytest.raises(ValueError, match="kernel must be one of"):
        mlstm_chunkwise(*args, kernel="cuda")
    with pytest.raises(ValueError, match="chunk_size"):
        mlstm_chunkwise(*args, chunk_size=0)
    with pytest.raises(ValueError, match="resets must be"):
        mlstm_chunkwise(*args, resets=np.zeros((2, 10), bool))
    with pytest.raises(ValueError, match="MLSTMState shapes"):
        mlstm_chunkwise(*args, initial_state=MLSTMState.zeros(2, 2, 16, 16))
    with pytest.raises(TypeError, match="floating point"):
        mlstm_parallel(*(x.astype(jnp.int32) for x in args))
    assert mlstm_chunkwise(*args, kernel="auto").shape == (2, 2, 64, 32)
