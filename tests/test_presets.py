"""Presets: the paper's parameter counts, and every preset runs."""

import jax
import jax.numpy as jnp
import pytest

from bioxlstm_jax import presets
from bioxlstm_jax.nn import XLSTMLM

# (preset, expected parameters, relative tolerance): 102.2M, 25.9M, 14.8M exactly as the papers'
# names round them; the DNA models are named by their order of magnitude (~0.5M, ~2M, ~4M).
COUNTS = [
    ("prot_xlstm_102m", 102.2e6, 0.0005),
    ("prot_xlstm_26m", 25.9e6, 0.002),
    ("chem_xlstm_15m", 14.8e6, 0.002),
    ("dna_xlstm_500k", 0.5e6, 0.05),
    ("dna_xlstm_2m", 2.0e6, 0.05),
    ("dna_xlstm_4m", 4.0e6, 0.07),
    # the jobs' small default models, exactly
    ("prot_small", 228_752, 0),
    ("dna_small", 61_904, 0),
    ("chem_small", 228_496, 0),
]


def n_params(cfg):
    shapes = jax.eval_shape(lambda: XLSTMLM(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))
    return sum(x.size for x in jax.tree_util.tree_leaves(shapes))


@pytest.mark.parametrize("name,expected,rtol", COUNTS)
def test_parameter_counts(name, expected, rtol):
    assert n_params(presets.get(name)) == pytest.approx(expected, rel=rtol)


def test_names_and_errors():
    assert set(presets.names()) == {c[0] for c in COUNTS}
    assert presets.get("prot_xlstm_26m", form="parallel").form == "parallel"
    with pytest.raises(ValueError, match="unknown preset"):
        presets.get("prot_xlstm_1b")
    with pytest.raises(TypeError):
        presets.get("chem_xlstm_15m", not_a_field=1)


@pytest.mark.parametrize("name", ["dna_xlstm_500k", "chem_xlstm_15m"])
def test_small_presets_run(name):
    cfg = presets.get(name)
    tokens = jnp.zeros((1, 16), jnp.int32)
    model = XLSTMLM(cfg)
    logits = model.apply(model.init(jax.random.key(0), tokens), tokens)
    assert logits.shape == (1, 16, cfg.vocab_size)
    assert bool(jnp.all(jnp.isfinite(logits)))
