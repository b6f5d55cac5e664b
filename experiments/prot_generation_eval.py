"""Prot-xLSTM's generation benchmark: proteins sampled in their family's context, scored against it.

    python -m experiments.prot_generation_eval --config.ckpt=<run or converted checkpoint> \
        [--config.msa=<one family's MSA> | --config.msa_dir=<folder or OpenProteinSet tree> \
         [--config.families=<split file of ids>]] [--workdir runs/prot_generation_eval] [--config.key=value ...]

For each family and each setting of the grid (``n_contexts`` x ``settings``: temperature, top-k,
top-p) the model samples ``num_samples`` proteins after ``n_context`` random members of the family;
every sample and up to ``max_natural`` of the family's own proteins are scored
(``bioxlstm_jax.evaluation.protein_generation``: length, Hamming distances to every family member
after a global alignment, HMMER bit score and E-value against the family's profile HMM). Per family and
setting the ``best`` lowest-perplexity samples are compared with the natural proteins (mean, median, std,
deltas, KS statistic and p-value, Pearson r with perplexity), then averaged over the families with a
95 % interval, as Prot-xLSTM's ``final_evaluation.ipynb``. Writes ``families/<id>.csv`` (a finished
family; a re-run skips it), ``samples.csv``, ``summary.csv``, ``summary.json`` and ``scores.png``
(each score per setting against the natural proteins; each score against perplexity).

Without ``msa`` / ``msa_dir``: the two held-out clusters shipped with the package. The defaults are
sized for a CPU; the reference's grid is ``--config.n_contexts=10,100,500,1000,-1`` (-1: the whole
family) with the five default settings, 100 best samples per family and setting
(``--config.best=100 --config.num_samples=<more than 100> --config.max_new_tokens=1000``). Structure
scores (ESMFold pTM, pLDDT) are left out: the folding model cannot be fetched here. Needs the
``protein`` extra (biopython, pyhmmer).
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

from bioxlstm_jax.jobs import model_flags, prot_generation_eval, run


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = model_flags()  # XLSTMConfig fields over the checkpoint's: --config.model.kernel=xla, ...
    c.ckpt = placeholder(str)  # training workdir or converted checkpoint (required)
    c.msa = placeholder(str)  # one family's MSA (a3m / a2m / FASTA / Stockholm, .gz ok)
    c.msa_dir = placeholder(str)  # an OpenProteinSet tree or a folder of MSA files, one family each
    c.families = placeholder(str)  # split file of family ids within msa_dir (unset: all of them)
    c.n_contexts = (10, 100)  # context sizes (family members before the sampled protein; -1: all)
    c.settings = "1.0:10:1.0,1.0:15:1.0,1.0:10:0.95,0.9:10:0.95,0.8:10:0.9"  # temperature:top_k:top_p (the reference's)
    c.num_samples = 8  # proteins sampled per family and setting
    c.best = 100  # lowest-perplexity samples per family and setting in the summary
    c.max_natural = 100  # the family's own proteins scored as the natural reference
    c.max_new_tokens = 500  # longest sampled protein (tokens)
    c.batch_size = 8  # proteins decoded together
    c.segment_length = 4096  # prefill segment (tokens per forward pass)
    c.seed = 0  # sampling and context seed
    c.progress = True
    return c


if __name__ == "__main__":
    run(prot_generation_eval, get_config, "runs/prot_generation_eval")
