"""Zero-shot variant-fitness prediction with a homolog-conditioned Prot-xLSTM (ProteinGym protocol).

    python -m experiments.prot_fitness --ckpt runs/prot_pretrain --dms BLAT_ECOLX_Jacquier_2013.csv \
      --msa BLAT_ECOLX.a3m [--reference DMS_substitutions.csv | --target_seq MSIQ...] \
      [--replicates 3] [--retrieval_alpha 0.0] [--out predictions.csv]

Per replicate: homology-weighted context of up to ``--max_context_sequences`` proteins within
``--max_context_tokens`` (wild type last), ONE prefill, then every mutated position scored in batches
from the cached state (``bioxlstm_jax.evaluation.proteingym``). Multi-mutants add single effects.
The wild type comes from ``--target_seq``, from the ProteinGym reference table (``--reference``,
row ``--dms_id``, default the DMS file's name; also gives the ``MSA_start`` offset), or is rebuilt
from the DMS file's mutated sequences. Writes the DMS rows plus ``predicted_score``, prints the
Spearman rho (and the AUC against ``DMS_score_bin`` when present) and saves a scatter plot.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("ckpt", None, "training workdir or converted checkpoint", required=True)
flags.DEFINE_string("dms", None, "ProteinGym substitutions CSV (mutant, DMS_score[, DMS_score_bin, mutated_sequence])",
                    required=True)
flags.DEFINE_string("msa", None, "homologs (a3m / a2m / FASTA / Stockholm, .gz ok); first row = the query",
                    required=True)
flags.DEFINE_string("out", "", "output CSV (default: <ckpt>/<dms name>_predictions.csv)")
flags.DEFINE_string("target_seq", "", "wild-type sequence")
flags.DEFINE_string("reference", "", "ProteinGym DMS_substitutions.csv (wild type and MSA_start)")
flags.DEFINE_string("dms_id", "", "row of --reference (default: the DMS file name without extension)")
flags.DEFINE_integer("offset", 1, "residue number of the wild type's first residue (ProteinGym MSA_start)")
flags.DEFINE_integer("replicates", 3, "context samples averaged (seeds 0..n-1)")
flags.DEFINE_integer("max_context_tokens", 200_000, "context budget in tokens")
flags.DEFINE_integer("max_context_sequences", 200, "most context proteins, the wild type included")
flags.DEFINE_integer("batch_size", 32, "queries scored together")
flags.DEFINE_float("retrieval_alpha", 0.0, "weight of the independent-site MSA model in the final score")
flags.DEFINE_integer("segment_length", 4096, "prefill segment (tokens per forward pass)")
flags.DEFINE_string("plot", "", "scatter plot PNG (default: <out>.png; 'none' to skip)")


def _stem(path: str) -> str:
    name = Path(path).name
    for ext in (".gz", ".csv"):
        name = name[: -len(ext)] if name.endswith(ext) else name
    return name


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp")
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def scatter(path: Path, pred, truth, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(truth, pred, s=6, alpha=0.5)
    ax.set_xlabel("DMS_score")
    ax.set_ylabel("predicted_score (log-ratio)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every file operation at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import numpy as np
    from tqdm.auto import tqdm

    from bioxlstm_jax.data.formats import read_msa
    from bioxlstm_jax.evaluation import proteingym as pg
    from bioxlstm_jax.inference import load_lm

    rows = pg.read_dms(FLAGS.dms)
    offset = FLAGS.offset
    if FLAGS.target_seq:
        wt = FLAGS.target_seq.upper()
    elif FLAGS.reference:
        wt, offset = pg.wild_type_from_reference(FLAGS.reference, FLAGS.dms_id or _stem(FLAGS.dms))
    else:
        wt = pg.wild_type_from_mutants(rows, offset)
    mutations = [pg.parse_mutant(r["mutant"], offset, wt, where=f"{FLAGS.dms}:{r['_line']}: ") for r in rows]
    msa = [r for _, r in read_msa(FLAGS.msa)]
    query = pg.match_columns(msa[0])[offset - 1: offset - 1 + len(wt)]
    if len(query) != len(wt):
        raise ValueError(f"{FLAGS.msa}: the query covers {len(query)} columns from residue {offset}, the wild type "
                         f"has {len(wt)} residues")
    weights = pg.homology_weights([pg.match_columns(r)[offset - 1: offset - 1 + len(wt)] for r in msa])
    positions = sorted({m.pos for muts in mutations for m in muts})
    model, params = load_lm(FLAGS.ckpt)
    effects = []
    with tqdm(total=FLAGS.replicates * len(positions), desc="score", unit="position") as bar:
        for seed in range(FLAGS.replicates):
            context = pg.sample_context(msa, wt, start=offset, seed=seed, max_tokens=FLAGS.max_context_tokens,
                                        max_sequences=FLAGS.max_context_sequences, weights=weights)
            effects.append(pg.single_site_scores(model, params, context, positions, batch_size=FLAGS.batch_size,
                                                 segment_length=FLAGS.segment_length, progress=bar.update))
    effect = np.mean(effects, 0)
    if FLAGS.retrieval_alpha:
        retrieval = pg.independent_site_scores(msa, wt, start=offset, weights=weights)
        effect = (1 - FLAGS.retrieval_alpha) * effect + FLAGS.retrieval_alpha * retrieval
    pred = pg.score_mutants(effect, mutations)
    for r, p in zip(rows, pred):
        r["predicted_score"] = f"{p:.6f}"
    out = Path(FLAGS.out or Path(FLAGS.ckpt) / f"{_stem(FLAGS.dms)}_predictions.csv")
    fields = [k for k in rows[0] if not k.startswith("_")]
    write_csv(out, rows, fields)
    truth = np.array([r["DMS_score"] for r in rows])
    rho = pg.spearman(pred, truth)
    msg = f"{len(rows)} mutants, {len(positions)} positions, {FLAGS.replicates} replicates: Spearman {rho:.4f}"
    if "DMS_score_bin" in rows[0] and all(r["DMS_score_bin"] not in ("", None) for r in rows):
        labels = np.array([int(float(r["DMS_score_bin"])) for r in rows])
        if 0 < labels.sum() < len(labels):
            msg += f", AUC {pg.roc_auc(pred, labels):.4f}"
    print(msg)
    print(f"wrote {out}")
    if FLAGS.plot != "none":
        png = Path(FLAGS.plot or out.with_suffix(".png"))
        scatter(png, pred, truth, f"{_stem(FLAGS.dms)}: Spearman {rho:.3f}")
        print(f"wrote {png}")


if __name__ == "__main__":
    sys.exit(app.run(main))
