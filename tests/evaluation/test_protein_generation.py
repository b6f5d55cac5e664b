"""Scores of generated proteins against their family: hand-computed cases, and HMMER on a real family."""

import numpy as np
import pytest

from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data.formats import read_msa
from bioxlstm_jax.data.protein import clean_sequence
from bioxlstm_jax.evaluation import protein_generation as pgen


def test_hamming_after_a_global_alignment():
    # ACDE vs ACFE: no gap, 1 mismatch in 4 columns; vs ACE: ACDE / AC-E (score 3 - 1), the gap counts;
    # vs AC: ACDE / AC-- (score 2 - 2), 2 of 4; the identical member is skipped
    out = pgen.hamming_to_family("ACDE", ["ACDE", "ACFE", "ACE", "AC"])
    assert out == pytest.approx({"min_hamming": 0.25, "median_hamming": 0.25, "mean_hamming": 1 / 3,
                                 "std_hamming": np.std([0.25, 0.25, 0.5])})
    assert np.isnan(pgen.hamming_to_family("ACDE", ["ACDE"])["min_hamming"])


def test_hmmer_scores_family_members_and_misses_a_random_protein():
    """A profile of 40 rows of the real BLAT_ECOLX MSA: its members score hundreds of bits with tiny
    E-values; a random protein of the same length has no hit, so 0 bits and E-value 1 (the reference's rule)."""
    rows = [r for _, r in read_msa(asset_path("protein", "BLAT_ECOLX", "BLAT_ECOLX_ColabFold_2202_poet.a3m.gz"))][:40]
    members = [clean_sequence(r) for r in rows]
    hmm = pgen.family_hmm(rows)
    random = "".join(np.random.default_rng(0).choice(list("ACDEFGHIKLMNPQRSTVWY"), len(members[0])))
    scores, evalues = pgen.hmmer_scores(hmm, [members[0], members[7], random])
    assert scores[0] > 300 and scores[1] > 300 and evalues[0] < 1e-100 and evalues[1] < 1e-100
    assert (scores[2], evalues[2]) == (0.0, 1.0)
    scored = pgen.score_proteins([members[0], random], members, hmm)
    assert scored[0]["sequence_length"] == len(members[0]) and scored[0]["min_hamming"] < 0.1
    assert scored[1]["min_hamming"] > 0.6 and scored[1]["hmmer_score"] == 0.0


def test_family_summary_and_the_table_over_families():
    def rec(ppl, length, hamming, hmmer):
        return {"perplexity": ppl, "sequence_length": length, "min_hamming": hamming, "hmmer_score": hmmer}

    samples = [rec(3.0, 10, 0.5, 10.0), rec(1.0, 1, 0.1, 30.0), rec(2.0, 2, 0.3, 20.0)]
    natural = [rec(0.0, 2, 0.2, 40.0)] * 3
    out = pgen.family_summary(samples, natural, best=2)  # the two lowest perplexities: lengths 1 and 2
    assert (out["n_samples"], out["n_best"], out["n_natural"]) == (3, 2, 3)
    assert (out["sequence_length_mean"], out["sequence_length_median"], out["sequence_length_std"]) == (1.5, 1.5, 0.5)
    assert (out["sequence_length_delta_mean"], out["hmmer_score_delta_mean"]) == (-0.5, -15.0)
    # ECDFs of {1, 2} and {2, 2, 2}: 0.5 apart at 1
    assert out["sequence_length_ks"] == 0.5 and 0 < out["sequence_length_ks_pvalue"] <= 1
    assert out["min_hamming_ppl_r"] == pytest.approx(1.0)  # hamming 0.1 / 0.3 / 0.5 at perplexity 1 / 2 / 3
    assert out["hmmer_score_ppl_r"] == pytest.approx(-1.0)
    table = pgen.summarize_families([{"n_best": 2, "x": -1.0}, {"n_best": 2, "x": 3.0}])
    assert table == {"x": {"mean": 2.0, "ci95": pytest.approx(1.96 / np.sqrt(2)), "families": 2}}
    with pytest.raises(ValueError, match="needs samples and natural proteins"):
        pgen.family_summary([], natural)
