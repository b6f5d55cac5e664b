"""Sample molecules from a Chem-xLSTM model and score them.

    python -m experiments.chem_generate --config.ckpt=runs/chem_pretrain [--workdir runs/chem_generate] \\
        [--config.n=1000]

Batched recurrent sampling from ``[BEG]`` (temperature, top-k, top-p; a molecule ends at ``[END]``),
then: validity, uniqueness, novelty against the training set (and against the test set, which is
what Chem-xLSTM reports as novelty), unique Bemis-Murcko scaffolds, internal diversity, FCD against
``reference`` (the ``fcd`` package's ChemNet), MW / logP / QED histograms against the reference
(``generated_properties.png``) and a grid of sampled molecules (``generated_grid.png``). Invalid
SMILES are counted, never fatal. Prints the metrics; writes them and the SMILES to
``generated.json`` in the workdir. Needs the chem extra (``pip install -e ".[chem]"``). With the
README's chem_pretrain run, 1,000 molecules take about a minute on a 2-core CPU.
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

from bioxlstm_jax.jobs import chem_generate, model_flags, run


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = model_flags()  # XLSTMConfig fields over the checkpoint's: --config.model.kernel=xla, .dtype=bfloat16, ...
    c.ckpt = placeholder(str)  # chem_pretrain workdir or converted Chem-xLSTM checkpoint (required)
    c.n = 1000  # molecules to sample
    c.reference = placeholder(str)  # SMILES file for FCD and the property plots (unset: the run's test file)
    c.train = placeholder(str)  # training SMILES for novelty (unset: the run's training file)
    c.test = placeholder(str)  # test SMILES for novelty_vs_test (unset: the run's test file)
    c.reference_size = 5000  # molecules of reference used (FCD, plots); 0 = all
    c.temperature = 1.0
    c.top_k = 0  # keep the k most likely tokens (0: all)
    c.top_p = 1.0  # nucleus sampling mass
    c.batch_size = 250  # molecules decoded together
    c.seed = 0  # sampling seed
    return c


if __name__ == "__main__":
    run(chem_generate, get_config, "runs/chem_generate")
