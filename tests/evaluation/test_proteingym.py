"""ProteinGym fitness: cached batched scoring equals a full forward per mutant; weights, context
sampling, mutant parsing and metrics against direct definitions; the real BLAT_ECOLX files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bioxlstm_jax import presets
from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data.formats import read_msa
from bioxlstm_jax.evaluation import proteingym as pg
from bioxlstm_jax.nn import XLSTMLM

BLAT_MSA = asset_path("protein", "BLAT_ECOLX", "BLAT_ECOLX_ColabFold_2202_poet.a3m.gz")
JACQUIER = asset_path("protein", "BLAT_ECOLX", "BLAT_ECOLX_Jacquier_2013.csv.gz")
REFERENCE = asset_path("protein", "BLAT_ECOLX", "DMS_substitutions_BLAT_ECOLX.csv.gz")


@pytest.fixture(scope="module")
def blat():
    rows = [r for _, r in read_msa(BLAT_MSA)]
    wt, offset = pg.wild_type_from_reference(REFERENCE, "BLAT_ECOLX_Jacquier_2013")
    return rows, wt, offset


def test_cached_scores_equal_a_full_forward_per_mutant(blat):
    rows, wt, _ = blat
    cfg = presets.get("prot_xlstm_26m", embedding_dim=32, num_blocks=2, chunk_size=16)
    model = XLSTMLM(cfg)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
    context = pg.sample_context(rows[:300], wt, seed=0, max_tokens=1200)
    positions = [0, 7, 150, 285]
    cached = pg.single_site_scores(model, params, context, positions, batch_size=3, segment_length=500)
    naive = pg.naive_single_site_scores(model, params, context, positions)
    np.testing.assert_allclose(cached[positions], naive[positions], atol=2e-5)
    assert np.isnan(np.delete(cached, positions, 0)).all()
    for p in positions:  # the wild type's own effect is 0
        assert cached[p, pg.AMINO_ACIDS.index(wt[p])] == 0.0
    assert np.abs(cached[positions]).max() > 1e-3  # not trivially zero


def test_homology_weights_match_their_definition():
    rng = np.random.default_rng(0)
    base = rng.choice(list("ACDEFG"), 30)
    msa = []
    for _ in range(40):
        row = base.copy()
        flip = rng.random(30) < rng.uniform(0, 0.5)
        row[flip] = rng.choice(list("ACDEFG-"), flip.sum())
        msa.append("".join(row))
    w = pg.homology_weights(msa, theta=0.2, block=7)
    neighbors = []
    for a in msa:
        nongap = sum(c != "-" for c in a)
        same = [sum(x == y and x != "-" for x, y in zip(a, b)) for b in msa]
        neighbors.append(sum(1 - s / nongap <= 0.2 for s in same))
    expect = 1 / np.array(neighbors)
    np.testing.assert_allclose(w, expect / expect.sum(), rtol=1e-6)


def test_sample_context_puts_the_wild_type_last(blat):
    rows, wt, offset = blat
    ctx = pg.sample_context(rows, wt, start=offset, seed=3, max_tokens=287 * 10)
    assert len(ctx) == 10 and ctx[-1] == wt
    assert all(set(c) <= set(pg.AMINO_ACIDS + "X") for c in ctx)
    assert ctx != pg.sample_context(rows, wt, start=offset, seed=4, max_tokens=287 * 10)
    assert ctx == pg.sample_context(rows, wt, start=offset, seed=3, max_tokens=287 * 10)
    few = pg.sample_context(rows[:3], wt, seed=0, max_tokens=287 * 10)
    assert len(few) == 4  # fewer rows than asked: all of them, then the wild type


def test_crop_keeps_insertions_inside_the_range():
    # match columns: M K V L; lower case = insertions
    assert pg.match_columns("Mk-V.L") == "M-VL"
    # match columns [start, end) plus the insertions between two of them
    assert pg._crop_row("Mk-VaL", 0, 3) == "Mk-V"
    assert pg._crop_row("Mk-VaL", 1, 4) == "-VaL"


def test_dms_parsing_and_wild_type_sources(blat, tmp_path):
    _, wt, offset = blat
    rows = pg.read_dms(JACQUIER)
    assert len(rows) == 989
    assert pg.wild_type_from_mutants(rows, offset) == wt
    assert wt[23] == "H" and wt[41] == "V"
    muts = pg.parse_mutant("H24Y:V42G", 1, wt)
    assert muts == [pg.Mutation("H", 23, "Y"), pg.Mutation("V", 41, "G")]
    with pytest.raises(ValueError, match="the wild type has 'H' at position 24, not 'A'"):
        pg.parse_mutant("A24Y", 1, wt)
    with pytest.raises(ValueError, match="outside the wild type"):
        pg.parse_mutant("A999Y", 1, wt)
    with pytest.raises(ValueError, match="expected '<wt><position><mt>'"):
        pg.parse_mutant("H24*", 1, wt)
    bad = tmp_path / "bad.csv"
    bad.write_text("mutant,DMS_score\nH24Y,0.5\nA42G,n/a\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: DMS_score 'n/a' is not a number"):
        pg.read_dms(bad)
    with pytest.raises(ValueError, match="no row with DMS_id"):
        pg.wild_type_from_reference(REFERENCE, "NOPE")


def test_additive_multi_mutants():
    eff = np.zeros((5, 20), np.float32)
    eff[1, pg.AMINO_ACIDS.index("A")] = -1.0
    eff[3, pg.AMINO_ACIDS.index("G")] = 0.5
    muts = [[pg.Mutation("L", 1, "A")], [pg.Mutation("L", 1, "A"), pg.Mutation("V", 3, "G")]]
    np.testing.assert_allclose(pg.score_mutants(eff, muts), [-1.0, -0.5])


def test_independent_site_model(blat):
    rows, wt, offset = blat
    eff = pg.independent_site_scores(rows[:500], wt, start=offset)
    assert eff.shape == (len(wt), 20) and np.isfinite(eff).all()
    idx = [pg.AMINO_ACIDS.index(c) for c in wt]
    assert (eff[np.arange(len(wt)), idx] == 0).all()
    # a conserved column: the wild type is the most frequent residue, so every substitution scores < 0
    assert (np.delete(eff[69], idx[69]) < 0).all()
