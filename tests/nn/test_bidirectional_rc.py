"""DNA-xLSTM modes: bidirectional (sum, alternating, native), RCPS equivariance, classifier heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bioxlstm_jax.data.dna import COMPLEMENT
from bioxlstm_jax.nn import XLSTMLM, XLSTMBlock, XLSTMClassifier, XLSTMConfig, reverse_complement
from bioxlstm_jax.nn.lm import _pool
from tests.helpers import assert_close_scaled
from tests.nn.test_model import perturbed_params

COMP = np.asarray(COMPLEMENT)
BASE = XLSTMConfig(vocab_size=12, embedding_dim=32, num_blocks=2, mlstm_num_heads=2, slstm_num_heads=2,
                   complement_map=COMPLEMENT, chunk_size=8)


def dna(seed, B=2, S=24):
    return jax.random.randint(jax.random.key(seed), (B, S), 7, 11)  # A C G T


@pytest.mark.parametrize("mode", ["none", "sum", "alternating", "native"])
def test_only_bidirectional_modes_see_the_future(mode):
    cfg = BASE.replace(bidirectional=mode, form="parallel" if mode == "native" else "chunkwise")
    model, tokens = XLSTMLM(cfg), dna(1)
    params = perturbed_params(model, tokens)
    out = model.apply({"params": params}, tokens)
    changed = tokens.at[:, 20].set(jnp.where(tokens[:, 20] == 7, 8, 7))
    out2 = model.apply({"params": params}, changed)
    early = float(jnp.max(jnp.abs(out2[:, :20] - out[:, :20])))
    if mode == "none":
        assert early == 0.0
    else:
        assert early > 1e-4


def test_sum_mode_is_block_of_x_plus_flipped_block_of_flipped_x():
    """One block: hidden = block(e) + flip(block(flip(e))) (the residual is counted twice, as DNA-xLSTM)."""
    cfg = BASE.replace(num_blocks=1, bidirectional="sum", add_post_blocks_norm=False)
    model, tokens = XLSTMLM(cfg), dna(2)
    params = perturbed_params(model, tokens)
    hidden = model.apply({"params": params}, tokens, method=lambda m, t: m.backbone(t))
    emb = params["backbone"]["token_embedding"]["embedding"][tokens]
    block = XLSTMBlock(cfg, 0)
    bp = {"params": params["backbone"]["block_0"]}
    fwd, _ = block.apply(bp, emb)
    bwd, _ = block.apply(bp, jnp.flip(emb, 1))
    assert_close_scaled(hidden, fwd + jnp.flip(bwd, 1), 1e-6)


def test_alternating_mode_flips_even_blocks():
    cfg = BASE.replace(num_blocks=2, bidirectional="alternating", add_post_blocks_norm=False)
    model, tokens = XLSTMLM(cfg), dna(3)
    params = perturbed_params(model, tokens)
    hidden = model.apply({"params": params}, tokens, method=lambda m, t: m.backbone(t))
    x = params["backbone"]["token_embedding"]["embedding"][tokens]
    y0, _ = XLSTMBlock(cfg, 0).apply({"params": params["backbone"]["block_0"]}, jnp.flip(x, 1))
    y1, _ = XLSTMBlock(cfg, 1).apply({"params": params["backbone"]["block_1"]}, jnp.flip(y0, 1))
    assert_close_scaled(hidden, y1, 1e-6)


@pytest.mark.parametrize("slstm_at", [(), (0, 1), (1,)], ids=["mlstm", "slstm", "mixed"])
@pytest.mark.parametrize("bidirectional", ["none", "sum"])
def test_rcps_lm_is_rc_equivariant(slstm_at, bidirectional):
    """logits(x) == flip(logits(rc(x)))[..., complement] with random, non-symmetric weights."""
    cfg = BASE.replace(rcps=True, slstm_at=slstm_at, bidirectional=bidirectional, rope="head")
    model = XLSTMLM(cfg)
    tokens = jax.random.randint(jax.random.key(4), (2, 24), 0, 12)
    params = perturbed_params(model, tokens)
    out = model.apply({"params": params}, tokens)
    out_rc = model.apply({"params": params}, reverse_complement(tokens, COMP))
    assert_close_scaled(out, jnp.flip(out_rc, 1)[..., COMP], 1e-5)
    # ...and the model is not trivially symmetric: logits of x and rc(x) differ.
    assert float(jnp.max(jnp.abs(out - out_rc))) > 1e-2


def test_non_rcps_model_is_not_equivariant():
    model = XLSTMLM(BASE)
    tokens = dna(5)
    params = perturbed_params(model, tokens)
    out = model.apply({"params": params}, tokens)
    out_rc = model.apply({"params": params}, reverse_complement(tokens, COMP))
    assert float(jnp.max(jnp.abs(out - jnp.flip(out_rc, 1)[..., COMP]))) > 1e-2


@pytest.mark.parametrize("pooling", ["mean", "first", "last"])
def test_classifier_pooling_ignores_padding(pooling):
    cfg = BASE.replace(bidirectional="sum")
    clf = XLSTMClassifier(cfg, num_classes=3, pooling=pooling)
    tokens = dna(6, S=20)
    mask = jnp.arange(20)[None] >= jnp.array([[4], [0]])  # row 0 left-padded by 4
    params = perturbed_params(clf, tokens)
    out = clf.apply({"params": params}, tokens, mask)
    assert out.shape == (2, 3)
    # Padding positions only enter through the (bidirectional) backbone, never through the pooling:
    # with a causal backbone and right padding, changing the padded tokens changes nothing.
    causal = XLSTMClassifier(BASE, num_classes=3, pooling=pooling)
    right_mask = jnp.arange(20)[None] < jnp.array([[16], [20]])
    p2 = perturbed_params(causal, tokens)
    a = causal.apply({"params": p2}, tokens, right_mask)
    b = causal.apply({"params": p2}, tokens.at[0, 16:].set(4), right_mask)
    assert_close_scaled(a, b, 1e-6)


def test_pooling_values():
    h = jnp.arange(2 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 1)  # row 0: 0 1 2 3, row 1: 4 5 6 7
    mask = jnp.array([[False, True, True, False], [True, True, True, True]])
    np.testing.assert_allclose(_pool(h, mask, "mean")[:, 0], [1.5, 5.5])
    np.testing.assert_allclose(_pool(h, mask, "first")[:, 0], [1.0, 4.0])
    np.testing.assert_allclose(_pool(h, mask, "last")[:, 0], [2.0, 7.0])


@pytest.mark.parametrize("rcps", [False, True], ids=["PH", "PS"])
def test_conjoined_classifiers_are_rc_invariant(rcps):
    cfg = BASE.replace(rcps=rcps, slstm_at=(1,))
    clf = XLSTMClassifier(cfg, num_classes=2)
    tokens = dna(7)
    params = perturbed_params(clf, tokens)
    conjoin = not rcps
    out = clf.apply({"params": params}, tokens, conjoin=conjoin)
    out_rc = clf.apply({"params": params}, reverse_complement(tokens, COMP), conjoin=conjoin)
    assert_close_scaled(out, out_rc, 1e-5)


def test_non_causal_models_refuse_state():
    cfg = BASE.replace(bidirectional="sum")
    model, tokens = XLSTMLM(cfg), dna(8)
    params = model.init(jax.random.key(0), tokens)["params"]
    with pytest.raises(ValueError, match="causal"):
        model.apply({"params": params}, tokens, return_state=True)
