"""DNA embeddings and zero-shot variant-effect scores against direct forward passes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bioxlstm_jax import presets
from bioxlstm_jax.data import dna
from bioxlstm_jax.inference.dna import embed, read_variants, variant_scores, write_embeddings
from bioxlstm_jax.nn import XLSTMLM
from tests.helpers import data_path

CHR1 = dna.read_genome(data_path("dna", "hg38_chr1_1-1000000.fa.gz"))
SEQ = CHR1["chr1"]


def tiny(**changes):
    cfg = presets.get("dna_xlstm_4m", embedding_dim=32, num_blocks=1, mlstm_num_heads=2, chunk_size=16, **changes)
    model = XLSTMLM(cfg)
    return model, model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]


def hidden(model, params, seq):
    return np.asarray(model.apply({"params": params}, jnp.asarray(dna.encode(seq))[None],
                                  method=lambda m, t: m.backbone(t)))[0]


def test_embeddings_equal_single_sequence_forwards_and_are_written(tmp_path):
    model, params = tiny(bidirectional="sum", rcps=True)
    seqs = [SEQ[200_000 + 97 * i: 200_000 + 97 * i + n].lower() if i % 2 else SEQ[300_000 + 50 * i:][:n]
            for i, n in enumerate([40, 64, 40, 40, 17])]
    got = dict(embed(model, params, seqs, batch_size=2))
    assert sorted(got) == list(range(5))
    for i, s in enumerate(seqs):
        np.testing.assert_allclose(got[i], hidden(model, params, s), rtol=1e-5, atol=1e-5)
        assert got[i].shape == (len(s), 64)  # RCPS: both halves
    fasta = tmp_path / "seqs.fa"
    fasta.write_text("".join(f">s{i} desc\n{s}\n" for i, s in enumerate(seqs)))
    paths = write_embeddings(model, params, fasta, tmp_path / "out", batch_size=2, progress=False)
    pooled, per_pos, offsets = (np.load(paths[k]) for k in ("pooled", "per_position", "offsets"))
    assert offsets.tolist() == [0, 40, 104, 144, 184, 201] and per_pos.shape == (201, 64)
    assert (tmp_path / "out" / "ids.txt").read_text().split() == [f"s{i}" for i in range(5)]
    for i in range(5):
        np.testing.assert_allclose(per_pos[offsets[i]:offsets[i + 1]], got[i], rtol=1e-6)
        np.testing.assert_allclose(pooled[i], got[i].mean(0), rtol=1e-5, atol=1e-6)
    assert not list((tmp_path / "out").glob(".*tmp*"))


def variants_table(tmp_path, positions, fmt="tsv"):
    alt_of = {"A": "G", "C": "T", "G": "A", "T": "C"}
    rows = [("chr1", p, SEQ[p - 1].upper(), alt_of[SEQ[p - 1].upper()]) for p in positions]
    path = tmp_path / f"v.{fmt}"
    if fmt == "vcf":
        path.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\n"
                        + "".join(f"{c}\t{p}\t.\t{r}\t{a}\t.\n" for c, p, r, a in rows))
    else:
        path.write_text("chrom\tpos\tref\talt\tlabel\n" + "".join(f"{c}\t{p}\t{r}\t{a}\t{p % 2}\n" for c, p, r, a in rows))
    return path, rows


def test_mlm_scores_are_the_masked_marginal_llr(tmp_path):
    model, params = tiny(bidirectional="sum")
    path, rows = variants_table(tmp_path, [400_001, 400_500, 512_345, 999_990, 700_000], "vcf")
    variants = read_variants(path)
    assert [(v.chrom, v.pos, v.ref, v.alt) for v in variants] == rows
    scores = variant_scores(model, params, CHR1, variants, window=64, batch_size=2)
    for (c, p, r, a), s in zip(rows, scores):
        start = min(max(p - 1 - 32, 0), len(SEQ) - 64)
        toks = dna.encode(SEQ[start:start + 64])
        toks = np.where(toks == dna.BASE_IDS["N"], dna.PAD, toks)
        toks[p - 1 - start] = dna.MASK
        lp = jax.nn.log_softmax(model.apply({"params": params}, jnp.asarray(toks)[None])[0, p - 1 - start])
        assert s == pytest.approx(float(lp[dna.BASE_IDS[a]] - lp[dna.BASE_IDS[r]]), abs=1e-5)


def test_clm_scores_are_window_log_likelihood_ratios(tmp_path):
    model, params = tiny()
    path, rows = variants_table(tmp_path, [400_001, 512_345, 600_010])
    variants = read_variants(path)
    assert [v.fields["label"] for v in variants] == ["1", "1", "0"]
    scores = variant_scores(model, params, CHR1, variants, window=48, objective="clm", batch_size=2)

    def ll(toks):
        lp = jax.nn.log_softmax(model.apply({"params": params}, jnp.asarray(toks)[None])[0])
        return float(jnp.sum(jnp.take_along_axis(lp[:-1], jnp.asarray(toks)[1:, None], -1)))

    for (c, p, r, a), s in zip(rows, scores):
        start = p - 1 - 24
        ref = dna.encode(SEQ[start:start + 48])
        alt = ref.copy()
        alt[24] = dna.BASE_IDS[a]
        assert s == pytest.approx(ll(alt) - ll(ref), abs=1e-4)
    with pytest.raises(ValueError, match="causal"):
        variant_scores(tiny(bidirectional="sum")[0], params, CHR1, variants, objective="clm")


def test_variant_errors_name_the_row(tmp_path):
    model, params = tiny()
    bad = tmp_path / "bad.tsv"
    bad.write_text("chrom\tpos\tref\talt\nchr1\t400001\tAT\tA\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: only single-base"):
        read_variants(bad)
    wrong = tmp_path / "wrong.tsv"
    base = SEQ[400_000].upper()
    other = "A" if base != "A" else "C"
    wrong.write_text(f"chrom\tpos\tref\talt\nchr1\t400001\t{base}\tG\nchr1\t400002\t{other}\t{other}\n")
    with pytest.raises(ValueError, match=r"wrong.tsv:3"):
        read_variants(wrong)  # ref == alt
    wrong.write_text(f"chrom\tpos\tref\talt\nchr1\t400001\t{other}\t{'G' if other != 'G' else 'T'}\n")
    with pytest.raises(ValueError, match=r"wrong.tsv:2: the reference allele"):
        variant_scores(model, params, CHR1, read_variants(wrong), window=32)
    (tmp_path / "chr.tsv").write_text("chrom\tpos\tref\talt\nchrX\t5\tA\tG\n")
    with pytest.raises(ValueError, match=r"chr.tsv:2: chromosome 'chrX'"):
        variant_scores(model, params, CHR1, read_variants(tmp_path / "chr.tsv"), window=32)
