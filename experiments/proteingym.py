"""ProteinGym's substitution benchmark in one command: every assay of the reference table whose DMS and
MSA files are present, scored zero-shot by a Prot-xLSTM, summarised with the leaderboard's metrics.

    python -m experiments.proteingym --config.ckpt=runs/prot_pretrain [--workdir runs/proteingym]
    python -m experiments.proteingym --config.ckpt=runs/prot_pretrain --config.reference=DMS_substitutions.csv \\
      --config.dms_dir=DMS_ProteinGym_substitutions --config.msa_dir=DMS_msa_files [--config.dms_ids=A,B]

Without ``reference`` / ``dms_dir`` / ``msa_dir`` / ``msa`` it scores the four shipped BLAT_ECOLX assays
(Deng 2012, Firnberg 2014, Jacquier 2013, Stiffler 2015) with the shipped ColabFold MSA. With the
ProteinGym download, ``dms_dir`` holds ``DMS_ProteinGym_substitutions/`` and ``msa_dir`` the
``DMS_msa_files/`` (each file found by the reference's ``DMS_filename`` / ``MSA_filename``, ``.gz``
allowed); assays without both files are listed and skipped (an explicit ``dms_ids`` entry without
them is an error).

Per assay: ``prot_fitness``'s protocol (wild type = ``target_seq[MSA_start - 1:MSA_end]``, homology-
weighted contexts of the MSA, ``replicates`` prefills, every mutated position scored from the cached
state, multi-mutants as sums of single effects), and the independent-site model of the same MSA
(weighted column profile) as a baseline row. Assays of one protein and MSA share their prefills.
Each ``assays/<DMS_id>.csv`` is written when its assay is done; re-running the command resumes.

Metrics (ProteinGym's definitions, ``evaluation.proteingym.assay_metrics``): Spearman with
``DMS_score``; AUC and MCC (predictions binarized at their median) against ``DMS_score_bin``; NDCG
and recall of the top 10 %. Averages (``leaderboard_summary``): per protein and selection type first,
then per selection type, then their mean (``Average``: the leaderboard's number, e.g. PoET 0.470
Spearman over 217 assays), and by MSA depth (Neff/L category). Outputs in the workdir:
``per_assay.csv``, ``summary.csv``, ``summary.json``, ``spearman.png``, ``assays/``.
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

from bioxlstm_jax.jobs import model_flags, proteingym, run


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = model_flags()  # XLSTMConfig fields over the checkpoint's: --config.model.kernel=xla, .dtype=bfloat16, ...
    c.ckpt = placeholder(str)  # training workdir or converted checkpoint (required)
    c.reference = placeholder(str)  # ProteinGym DMS_substitutions.csv (unset: the shipped BLAT_ECOLX rows)
    c.dms_dir = placeholder(str)  # folder of the DMS files (DMS_filename)
    c.msa_dir = placeholder(str)  # folder of the MSA files (MSA_filename)
    c.msa = placeholder(str)  # one MSA for every assay instead of msa_dir
    c.dms_ids = placeholder(str)  # comma-separated DMS_ids (unset: every assay with its files)
    c.replicates = 3  # context samples averaged (seeds 0..n-1)
    c.max_context_tokens = 200_000  # context budget in tokens
    c.max_context_sequences = 200  # most context proteins, the wild type included
    c.batch_size = 32  # queries scored together
    c.retrieval_alpha = 0.0  # weight of the independent-site MSA model in the model's score
    c.segment_length = 4096  # prefill segment (tokens per forward pass)
    c.context_devices = 1  # devices each prefill segment is split over (context parallelism; divides segment_length)
    c.progress = True
    return c


if __name__ == "__main__":
    run(proteingym, get_config, "runs/proteingym")
