"""Zero-shot variant-fitness prediction with a homolog-conditioned Prot-xLSTM (ProteinGym protocol).

    python -m experiments.prot_fitness --config.ckpt=runs/prot_pretrain \\
      --config.dms=BLAT_ECOLX_Jacquier_2013.csv --config.msa=BLAT_ECOLX.a3m [--workdir runs/prot_fitness] \\
      [--config.reference=DMS_substitutions.csv | --config.target_seq=MSIQ...] [--config.replicates=3]

Per replicate: homology-weighted context of up to ``max_context_sequences`` proteins within
``max_context_tokens`` (wild type last), ONE prefill, then every mutated position scored in batches
from the cached state (``bioxlstm_jax.evaluation.proteingym``). Multi-mutants add single effects.
The wild type comes from ``target_seq``, from the ProteinGym reference table (``reference``, row
``dms_id``, default the DMS file's name; also gives the ``MSA_start`` offset), or is rebuilt from the
DMS file's mutated sequences. Writes ``<dms name>_predictions.csv`` (the DMS rows plus
``predicted_score``) and a scatter plot ``<dms name>_predictions.png`` into the workdir and prints the
Spearman rho (and the AUC against ``DMS_score_bin`` when present). The shipped BLAT_ECOLX assay (4,996
mutants, 263 positions) with the README's small model takes a few minutes on a 2-core CPU.
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

from bioxlstm_jax.jobs import model_flags, prot_fitness, run


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = model_flags()  # XLSTMConfig fields over the checkpoint's: --config.model.kernel=xla, .dtype=bfloat16, ...
    c.ckpt = placeholder(str)  # training workdir or converted checkpoint (required)
    c.dms = placeholder(str)  # ProteinGym substitutions CSV: mutant, DMS_score[, DMS_score_bin] (required)
    c.msa = placeholder(str)  # homologs (a3m / a2m / FASTA / Stockholm, .gz ok); first row = the query (required)
    c.target_seq = placeholder(str)  # wild-type sequence
    c.reference = placeholder(str)  # ProteinGym DMS_substitutions.csv (wild type and MSA_start)
    c.dms_id = placeholder(str)  # row of reference (unset: the DMS file name without extension)
    c.offset = 1  # residue number of the wild type's first residue (ProteinGym MSA_start)
    c.replicates = 3  # context samples averaged (seeds 0..n-1)
    c.max_context_tokens = 200_000  # context budget in tokens
    c.max_context_sequences = 200  # most context proteins, the wild type included
    c.batch_size = 32  # queries scored together
    c.retrieval_alpha = 0.0  # weight of the independent-site MSA model in the final score
    c.segment_length = 4096  # prefill segment (tokens per forward pass)
    c.context_devices = 1  # devices each prefill segment is split over (context parallelism; divides segment_length)
    c.plot = True  # scatter plot beside the predictions
    return c


if __name__ == "__main__":
    run(prot_fitness, get_config, "runs/prot_fitness")
