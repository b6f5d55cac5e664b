"""Components match the official PyTorch xLSTM modules with the same weights, and initialise as they do."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bioxlstm_jax.nn import DepthwiseConv1d, LayerNorm, LinearHeadwiseExpand, MultiHeadLayerNorm

try:  # PyTorch and the official xlstm package: the `torch` tests (deselected where the test extra has no PyTorch)
    import torch
    from xlstm.components.conv import CausalConv1d as TorchConv
    from xlstm.components.conv import CausalConv1dConfig
    from xlstm.components.linear_headwise import LinearHeadwiseExpand as TorchHeadwise
    from xlstm.components.linear_headwise import LinearHeadwiseExpandConfig
    from xlstm.components.ln import LayerNorm as TorchLayerNorm
    from xlstm.components.ln import MultiHeadLayerNorm as TorchMultiHeadLayerNorm
except ModuleNotFoundError:
    pass

RNG = np.random.default_rng(0)


def _t(x):
    return torch.from_numpy(np.asarray(x, np.float32))


@pytest.mark.torch
def test_layernorm_matches_official():
    x = RNG.normal(size=(2, 5, 24)).astype(np.float32) * 3 + 1
    w = RNG.normal(size=(24,)).astype(np.float32)
    ref = TorchLayerNorm(ndim=24)
    with torch.no_grad():
        ref.weight.copy_(_t(w))
        expected = ref(_t(x)).numpy()
    params = LayerNorm().init(jax.random.key(0), x)
    chex.assert_trees_all_equal(params["params"]["weight"], jnp.zeros(24))
    actual = LayerNorm().apply({"params": {"weight": jnp.asarray(w)}}, x)
    chex.assert_trees_all_close(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.torch
def test_multihead_layernorm_matches_official():
    B, NH, S, DH = 2, 3, 7, 8
    x = RNG.normal(size=(B, NH, S, DH)).astype(np.float32) * 2
    w = RNG.normal(size=(NH * DH,)).astype(np.float32)
    ref = TorchMultiHeadLayerNorm(ndim=NH * DH)
    with torch.no_grad():
        ref.weight.copy_(_t(w))
        expected = ref(_t(x)).numpy()  # (B, NH, S, DH)
    actual = MultiHeadLayerNorm().apply({"params": {"weight": jnp.asarray(w)}}, x.transpose(0, 2, 1, 3))
    chex.assert_trees_all_close(actual.transpose(0, 2, 1, 3), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("kernel_size", [2, 4])
def test_causal_conv_matches_official_and_steps(kernel_size):
    B, S, D = 2, 11, 6
    x = RNG.normal(size=(B, S, D)).astype(np.float32)
    ref = TorchConv(CausalConv1dConfig(feature_dim=D, kernel_size=kernel_size))
    with torch.no_grad():
        expected = ref(_t(x)).numpy()
    params = {"params": {"kernel": jnp.asarray(ref.conv.weight.detach().numpy()[:, 0, :].T),
                         "bias": jnp.asarray(ref.conv.bias.detach().numpy())}}
    conv = DepthwiseConv1d(kernel_size=kernel_size)
    y, state = conv.apply(params, x)
    chex.assert_trees_all_close(y, expected, atol=1e-6, rtol=1e-6)
    chex.assert_trees_all_close(state, x[:, -(kernel_size - 1):])
    # Prefill 5 tokens, then one token at a time: equals the full pass.
    y_pre, state = conv.apply(params, x[:, :5])
    ys = [y_pre]
    for t in range(5, S):
        y_t, state = conv.apply(params, x[:, t : t + 1], state)
        ys.append(y_t)
    chex.assert_trees_all_close(jnp.concatenate(ys, axis=1), expected, atol=1e-6, rtol=1e-6)


def test_causal_conv_init_is_torch_default():
    params = DepthwiseConv1d(kernel_size=4).init(jax.random.key(1), jnp.zeros((1, 3, 512)))["params"]
    bound = 1 / math.sqrt(4)
    for p in (params["kernel"], params["bias"]):
        assert float(jnp.max(jnp.abs(p))) <= bound
        assert float(jnp.std(p)) == pytest.approx(bound / math.sqrt(3), rel=0.1)


@pytest.mark.torch
@pytest.mark.parametrize("expand,use_bias", [(1, False), (2, True)])
def test_headwise_linear_matches_official(expand, use_bias):
    D, NH = 16, 4
    x = RNG.normal(size=(2, 5, D)).astype(np.float32)
    ref = TorchHeadwise(LinearHeadwiseExpandConfig(in_features=D, num_heads=NH, expand_factor_up=expand, bias=use_bias))
    params = {"weight": jnp.asarray(ref.weight.detach().numpy())}
    if use_bias:
        b = RNG.normal(size=(D * expand,)).astype(np.float32)
        with torch.no_grad():
            ref.bias.copy_(_t(b))
        params["bias"] = jnp.asarray(b)
    with torch.no_grad():
        expected = ref(_t(x)).numpy()
    module = LinearHeadwiseExpand(num_heads=NH, expand=expand, use_bias=use_bias)
    chex.assert_trees_all_equal_shapes(module.init(jax.random.key(0), x)["params"], params)
    chex.assert_trees_all_close(module.apply({"params": params}, x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("D,NH,dtype", [(16, 4, "float32"), (64, 2, "float32"), (1024, 256, "float32"),
                                         (16, 4, "bfloat16")])
def test_headwise_linear_gradients_match_official(D, NH, dtype):
    """Blocks up to 8 wide take the unrolled path with its custom VJP, wider ones the einsum."""
    x = RNG.normal(size=(3, 7, D)).astype(np.float32)
    cot = RNG.normal(size=(3, 7, D)).astype(np.float32)
    ref = TorchHeadwise(LinearHeadwiseExpandConfig(in_features=D, num_heads=NH, bias=False))
    tx = _t(x).requires_grad_(True)
    (ref(tx) * _t(cot)).sum().backward()
    params = {"weight": jnp.asarray(ref.weight.detach().numpy())}
    module = LinearHeadwiseExpand(num_heads=NH)

    def loss(p, x):
        return jnp.sum(module.apply({"params": p}, x.astype(dtype)).astype(jnp.float32) * cot)

    dp, dx = jax.grad(loss, argnums=(0, 1))(params, jnp.asarray(x))
    tol = 1e-5 if dtype == "float32" else 3e-2
    scale = lambda a: max(1.0, float(np.abs(a).max()))  # noqa: E731
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=tol * scale(tx.grad.numpy()), rtol=tol)
    np.testing.assert_allclose(dp["weight"], ref.weight.grad.numpy(), atol=tol * scale(ref.weight.grad.numpy()),
                               rtol=tol)
    assert dp["weight"].dtype == jnp.float32


def test_headwise_linear_init_std_and_errors():
    params = LinearHeadwiseExpand(num_heads=4).init(jax.random.key(2), jnp.zeros((1, 256)))["params"]
    assert float(jnp.std(params["weight"])) == pytest.approx(math.sqrt(2 / 5 / 64), rel=0.05)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        LinearHeadwiseExpand(num_heads=3).init(jax.random.key(0), jnp.zeros((1, 16)))


@pytest.mark.torch
def test_same_padding_conv_matches_torch():
    """DNA-xLSTM's non-causal conv: torch Conv1d(padding="same", groups=D)."""
    B, S, D, KS = 2, 11, 8, 4
    x = RNG.normal(size=(B, S, D)).astype(np.float32)
    ref = torch.nn.Conv1d(D, D, KS, padding="same", groups=D)
    with torch.no_grad():
        expected = ref(_t(x).transpose(1, 2)).transpose(1, 2).numpy()
    params = {"kernel": jnp.asarray(ref.weight.detach().numpy()[:, 0, :].T), "bias": jnp.asarray(ref.bias.detach().numpy())}
    y, state = DepthwiseConv1d(KS, causal=False).apply({"params": params}, x)
    assert state is None
    chex.assert_trees_all_close(y, expected, atol=1e-5)


def test_conv_resets_drop_inputs_from_earlier_documents():
    x = jnp.asarray(RNG.normal(size=(1, 10, 3)).astype(np.float32))
    conv = DepthwiseConv1d(4)
    params = conv.init(jax.random.key(0), x)
    resets = jnp.zeros((1, 10), bool).at[0, 6].set(True)
    packed, _ = conv.apply(params, x, resets=resets)
    first, _ = conv.apply(params, x[:, :6])
    second, _ = conv.apply(params, x[:, 6:])
    chex.assert_trees_all_close(packed, jnp.concatenate([first, second], 1), atol=1e-6)


@pytest.mark.parametrize("reset_at", [6, 7, 8, 9])
def test_conv_state_after_a_reset_holds_no_earlier_inputs(reset_at):
    """A call that ends within KS-1 tokens of a reset hands on a state the next call may use: the
    inputs before the reset are zeros in it (segmented remat, split sequences)."""
    x = jnp.asarray(RNG.normal(size=(1, 14, 3)).astype(np.float32))
    conv = DepthwiseConv1d(4)
    params = conv.init(jax.random.key(0), x)
    resets = jnp.zeros((1, 14), bool).at[0, reset_at].set(True)
    whole, last = conv.apply(params, x, resets=resets)
    first, state = conv.apply(params, x[:, :10], resets=resets[:, :10])
    second, state = conv.apply(params, x[:, 10:], state, resets=resets[:, 10:])
    chex.assert_trees_all_close(jnp.concatenate([first, second], 1), whole, atol=1e-6)
    chex.assert_trees_all_close(state, last, atol=0)
