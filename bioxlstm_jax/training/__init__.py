"""Data-parallel / FSDP training on a device mesh over all hosts, with exact resume.

``train(config, workdir, task)`` is the loop every experiment calls; ``base_config()`` its fields;
``causal_lm_task`` / ``masked_lm_task`` / ``classification_task`` the usual tasks. The jobs that run
it from the command line are in ``bioxlstm_jax.jobs``.
"""

from bioxlstm_jax.training.mesh import initialize_distributed, make_mesh
from bioxlstm_jax.training.tasks import causal_lm_task, classification_task, masked_lm_task
from bioxlstm_jax.training.trainer import Task, TrainState, base_config, train

__all__ = ["Task", "TrainState", "base_config", "causal_lm_task", "classification_task", "initialize_distributed",
           "make_mesh", "masked_lm_task", "train"]
