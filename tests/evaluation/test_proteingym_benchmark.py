"""The ProteinGym leaderboard's metrics and averaging, each against a case computed by hand, and the
reference table reader."""

import math

import numpy as np
import pytest

from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.evaluation import proteingym as pg
from bioxlstm_jax.evaluation.metrics import mcc_at_median, ndcg_top, top_recall


def test_ndcg_of_the_top_10_percent_by_hand():
    true = np.arange(20.0)  # gains t / 19; k = floor(20 x 10 %) = 2
    scores = -np.arange(20.0)
    scores[19], scores[10] = 100.0, 50.0  # the two best-scored items: true 19 (rank 1) and true 10 (rank 2)
    dcg = 1.0 / math.log2(2) + (10 / 19) / math.log2(3)
    ideal = 1.0 / math.log2(2) + (18 / 19) / math.log2(3)
    assert ndcg_top(true, scores) == pytest.approx(dcg / ideal, rel=1e-12)
    assert ndcg_top(true, true) == pytest.approx(1.0)
    # reversed: rank 1 holds gain 0 (dropped), rank 2 gain 1/19
    assert ndcg_top(true, -true) == pytest.approx((1 / 19) / math.log2(3) / ideal, rel=1e-12)
    # no top-k item with a gain: 0
    assert ndcg_top(np.array([0.0] * 19 + [1.0]), np.arange(20.0)[::-1]) == 0.0


def test_top_recall_by_hand():
    true = np.arange(20.0)  # 90th percentile 17.1: the top items are 18 and 19
    scores = np.zeros(20)
    scores[19], scores[10] = 2.0, 1.0  # above the scores' 90th percentile: items 19 and 10
    assert top_recall(true, scores) == 0.5
    assert top_recall(true, true) == 1.0
    assert top_recall(np.ones(20), scores) == 0.0  # nothing above the percentile


def test_mcc_binarizes_the_prediction_at_its_median():
    # median 0.375: predictions 0, 1, 0, 1 against labels 0, 1, 1, 1: TP 2, TN 1, FP 0, FN 1
    assert mcc_at_median([0.1, 0.4, 0.35, 0.8], [0, 1, 1, 1]) == pytest.approx(2 / math.sqrt(12))


def test_assay_metrics_need_both_classes_for_auc_and_mcc():
    y = np.arange(30.0)
    out = pg.assay_metrics(y, y, (y > 14).astype(int))
    assert out == {"Spearman": 1.0, "AUC": 1.0, "MCC": 1.0, "NDCG": 1.0, "Top_recall": 1.0}
    out = pg.assay_metrics(y, -y, np.ones(30, int))
    assert out["Spearman"] == -1.0 and math.isnan(out["AUC"]) and math.isnan(out["MCC"])
    assert math.isnan(pg.assay_metrics(y, y)["AUC"])


def test_leaderboard_averaging_by_hand():
    """Per (protein, selection type) first, then per selection type, then the mean of the types."""
    rows = [dict(UniProt_ID="P1", coarse_selection_type="Activity", MSA_Neff_L_category="low", Spearman=0.2),
            dict(UniProt_ID="P1", coarse_selection_type="Activity", MSA_Neff_L_category="low", Spearman=0.4),
            dict(UniProt_ID="P2", coarse_selection_type="Activity", MSA_Neff_L_category="High", Spearman=0.9),
            dict(UniProt_ID="P3", coarse_selection_type="Stability", MSA_Neff_L_category="High", Spearman=0.5),
            dict(UniProt_ID="P3", coarse_selection_type="Stability", MSA_Neff_L_category="High", Spearman=float("nan"))]
    out = pg.leaderboard_summary(rows, "Spearman")
    assert out == pytest.approx({"Average": (0.6 + 0.5) / 2, "Function_Activity": (0.3 + 0.9) / 2,
                                 "Function_Stability": 0.5, "Low_MSA_depth": 0.3, "High_MSA_depth": (0.9 + 0.5) / 2})
    assert np.mean([0.2, 0.4, 0.9, 0.5]) != pytest.approx(out["Average"])  # not the plain mean over assays


def test_reference_table_reader(tmp_path):
    rows = pg.read_reference(asset_path("protein", "BLAT_ECOLX", "DMS_substitutions_BLAT_ECOLX.csv.gz"))
    assert [r["DMS_id"] for r in rows] == ["BLAT_ECOLX_Deng_2012", "BLAT_ECOLX_Firnberg_2014",
                                          "BLAT_ECOLX_Jacquier_2013", "BLAT_ECOLX_Stiffler_2015"]
    assert {r["coarse_selection_type"] for r in rows} == {"OrganismalFitness"}
    bad = tmp_path / "ref.csv"
    bad.write_text("DMS_id,DMS_filename\nA,a.csv\n")
    with pytest.raises(ValueError, match=r"ref\.csv:1: expected ProteinGym reference columns .* missing \['UniProt_ID'"):
        pg.read_reference(bad)


def test_an_msa_of_the_whole_target_or_of_the_msa_region_gives_the_same_columns(tmp_path):
    """ProteinGym's MSAs span [MSA_start, MSA_end] of the target; others span the whole target."""
    from bioxlstm_jax.data.formats import read_msa

    path = asset_path("protein", "BLAT_ECOLX", "BLAT_ECOLX_ColabFold_2202_poet.a3m.gz")
    rows = [r for _, r in read_msa(path)][:300]
    target = pg.match_columns(rows[0])
    region = tmp_path / "region.a3m"  # the match columns of residues 24..286 only
    region.write_text("".join(f">s{i}\n{pg.match_columns(r)[23:]}\n" for i, r in enumerate(rows)))
    whole = tmp_path / "whole.a3m"
    whole.write_text("".join(f">s{i}\n{pg.match_columns(r)}\n" for i, r in enumerate(rows)))
    wt = target[23:]
    rows_w, start_w, weights_w = pg.prepare_msa(whole, wt, offset=24)
    rows_r, start_r, weights_r = pg.prepare_msa(region, wt, offset=24)
    assert (start_w, start_r) == (24, 1)
    np.testing.assert_allclose(weights_r, weights_w)
    assert pg.independent_site_scores(rows_r, wt, start=start_r, weights=weights_r).tolist() == \
        pg.independent_site_scores(rows_w, wt, start=start_w, weights=weights_w).tolist()
    with pytest.raises(ValueError, match=r"whole\.a3m: the first row \(the query\) is not the wild type"):
        pg.prepare_msa(whole, target[:263], offset=24)


def test_a_query_a_few_residues_off_the_wild_type_is_scored_with_a_warning(tmp_path):
    """An official MSA whose query differs from the reference target at a few residues (another UniProt
    version or construct of the protein) is the same protein: scored against the wild type, with one
    warning naming the residues. Below 95 % identity over the aligned residues it is another protein and
    refused. Fixtures: the first 50 rows of the real BLAT_ECOLX ColabFold MSA, query residues changed."""
    import warnings

    from bioxlstm_jax.data.formats import read_msa

    path = asset_path("protein", "BLAT_ECOLX", "BLAT_ECOLX_ColabFold_2202_poet.a3m.gz")
    rows = [r for _, r in read_msa(path)][:50]
    wt = pg.match_columns(rows[0])

    def msa_with_query(query, name):
        out = tmp_path / name
        out.write_text(f">query\n{query}\n" + "".join(f">s{i}\n{r}\n" for i, r in enumerate(rows[1:])))
        return out

    one_off = wt[:99] + ("A" if wt[99] != "A" else "G") + wt[100:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        msa, start, weights = pg.prepare_msa(msa_with_query(one_off, "one_off.a3m"), wt)
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'one_off.a3m'}: the first row (the query) differs from the wild type at 1 of its 286 aligned "
        f"residues ({wt[99]}100{one_off[99]}: wild type, residue, MSA; identity 99.7%); scoring against the wild "
        "type with this MSA as context"]
    assert start == 1 and len(msa) == 50 and weights.shape == (50,)
    far = "".join(("A" if c != "A" else "G") if i % 16 == 0 else c for i, c in enumerate(wt))  # 18 of 286: 93.7 %
    with pytest.raises(ValueError, match=r"far\.a3m: the first row \(the query\) is not the wild type: 18 of 286 "
                                         r"residues differ .* identity 93\.7% over the 286 aligned residues, 95% needed"):
        pg.prepare_msa(msa_with_query(far, "far.a3m"), wt)
