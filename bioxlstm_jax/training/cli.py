"""The command-line convention of every experiment (big_vision / flax-examples style).

    python -m experiments.X [--workdir DIR] [--config.key=value ...]

``run(get_config, build_task, default_workdir, after=None)`` defines the flags, starts
``jax.distributed`` when the config or the environment asks for several processes, builds the task
from the final config and calls ``train``, then ``after(config, workdir)`` if given (an evaluation
of the trained model). Re-running the same command resumes from ``--workdir``.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from bioxlstm_jax.training.mesh import initialize_distributed
from bioxlstm_jax.training.trainer import Task, train

__all__ = ["run"]


def run(get_config: Callable[[], ml_collections.ConfigDict],
        build_task: Callable[[ml_collections.ConfigDict], Task], default_workdir: str,
        after: Callable[[ml_collections.ConfigDict, str], None] | None = None) -> None:
    from absl import app, flags, logging
    from ml_collections import config_flags

    config_flag = config_flags.DEFINE_config_dict("config", get_config(), "experiment config; override "
                                                  "fields with --config.key=value", lock_config=True)
    workdir_flag = flags.DEFINE_string("workdir", default_workdir, "run directory (resumed when it exists)")

    def main(argv):
        logging.set_verbosity(logging.WARNING)  # orbax logs every file operation at INFO
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        config = config_flag.value
        d = config.distributed
        initialize_distributed(d.coordinator_address or None, d.num_processes or None,
                               d.process_id if d.process_id >= 0 else None)
        train(config, workdir_flag.value, build_task(config))
        if after is not None:
            after(config, workdir_flag.value)

    app.run(main)
