"""The jobs behind ``python -m experiments.<job>``: each is ``job(config, workdir)``, importable from a
notebook, over the config that ``experiments/<job>.py``'s ``get_config()`` returns. Everything a job
writes goes under ``workdir``; training jobs resume from it.

| job | what it does |
|---|---|
| ``prot_pretrain`` / ``dna_pretrain`` / ``chem_pretrain`` | train a language model |
| ``dna_finetune`` | fine-tune a DNA classifier over seeds |
| ``prot_generate`` / ``chem_generate`` | sample proteins / molecules from a trained model |
| ``prot_generation_eval`` | Prot-xLSTM's generation benchmark: samples scored against their family |
| ``prot_fitness`` | zero-shot fitness of a ProteinGym assay |
| ``proteingym`` | every ProteinGym assay present, leaderboard metrics and averages, resumable |
| ``dna_embed`` / ``dna_variants`` | embeddings of a FASTA / variant-effect scores |
| ``chem_icl`` | in-context generation and ranking on held-out molecular domains |
"""

from bioxlstm_jax.jobs.cli import model_flags, run
from bioxlstm_jax.jobs.dna import dna_embed, dna_variants
from bioxlstm_jax.jobs.finetune import dna_finetune
from bioxlstm_jax.jobs.fitness import prot_fitness
from bioxlstm_jax.jobs.generate import chem_generate, prot_generate
from bioxlstm_jax.jobs.generation_eval import prot_generation_eval
from bioxlstm_jax.jobs.icl import chem_icl
from bioxlstm_jax.jobs.pretrain import chem_pretrain, dna_pretrain, prot_pretrain
from bioxlstm_jax.jobs.proteingym import proteingym

__all__ = ["run", "model_flags", "prot_pretrain", "dna_pretrain", "chem_pretrain", "dna_finetune", "prot_generate",
           "chem_generate", "prot_generation_eval", "prot_fitness", "proteingym", "dna_embed", "dna_variants", "chem_icl"]
