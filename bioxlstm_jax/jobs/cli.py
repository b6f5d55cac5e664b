"""The one command-line convention of every job (big_vision / flax-examples style).

    python -m experiments.X [--workdir DIR] [--config.key=value ...]

``run(job, get_config, default_workdir)`` defines the two flags, starts ``jax.distributed`` when the
config asks for several processes (``config.distributed``, training jobs), then calls
``job(config, workdir)``. A job writes everything it makes under ``workdir``; training jobs resume
from it when the same command is run again.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

__all__ = ["run", "require"]


def run(job: Callable[[ml_collections.ConfigDict, str], object],
        get_config: Callable[[], ml_collections.ConfigDict], default_workdir: str) -> None:
    from absl import app, flags, logging
    from ml_collections import config_flags

    config_flag = config_flags.DEFINE_config_dict("config", get_config(), "job config; override fields with "
                                                  "--config.key=value", lock_config=True)
    workdir_flag = flags.DEFINE_string("workdir", default_workdir, "where the job writes (a training run "
                                       "resumes from it)")

    def main(argv):
        logging.set_verbosity(logging.WARNING)  # orbax logs every file operation at INFO
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (every option is --workdir or "
                                 "--config.key=value)")
        config = config_flag.value
        if "distributed" in config:
            from bioxlstm_jax.training.mesh import initialize_distributed

            d = config.distributed
            initialize_distributed(d.coordinator_address or None, d.num_processes or None,
                                   d.process_id if d.process_id >= 0 else None)
        job(config, workdir_flag.value)

    app.run(main)


def require(config: ml_collections.ConfigDict, *keys: str) -> None:
    """Raises ``ValueError`` naming every ``--config.<key>`` that is unset (None or empty)."""
    missing = [k for k in keys if config.get(k) in (None, "")]
    if missing:
        raise ValueError("missing " + ", ".join(f"--config.{k}" for k in missing))
