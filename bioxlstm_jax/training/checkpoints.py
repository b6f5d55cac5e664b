"""Orbax checkpoints of the whole training run: train state, data-iterator state and config.

``<workdir>/checkpoints/<step>/`` keeps the latest ``keep`` steps (async writes; an interrupted
write never becomes visible and its temporary folder is removed when the run restarts). ``<workdir>/best/<step>/`` keeps the parameters with the best eval
metric. Restoring takes an abstract state whose shardings may differ from the saved ones (another
mesh, FSDP on or off). The data-iterator state is saved per process (grain's handler) and needs the
same number of processes on restore. ``read_params(workdir, which)`` is the one reader of a run's
parameters for inference (through the same CheckpointManagers, read-only).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import grain
import jax
import orbax.checkpoint as ocp

__all__ = ["Checkpoints", "read_params"]


class Checkpoints:
    def __init__(self, workdir: str | os.PathLike, *, keep: int = 3, async_save: bool = True,
                 best_metric: str | None = None, best_mode: str = "min"):
        workdir = Path(workdir).absolute()
        self.latest = ocp.CheckpointManager(
            workdir / "checkpoints",
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                                 create=True, cleanup_tmp_directories=True))
        self.best = None
        if best_metric:
            self.best = ocp.CheckpointManager(
                workdir / "best",
                options=ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=lambda m: m[best_metric],
                                                     best_mode=best_mode, enable_async_checkpointing=async_save,
                                                     create=True, cleanup_tmp_directories=True))

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def drop_best_after(self, step: int | None) -> None:
        """Deletes best steps newer than ``step`` (all when None): a run killed between its best and its
        latest write leaves one, which would make the resumed run's save of that step fail."""
        if self.best is not None:
            for s in self.best.all_steps():
                if step is None or s > step:
                    self.best.delete(s)

    def save(self, step: int, state, data_iterator, config: dict) -> None:
        self.latest.save(step, force=True, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_iterator),
            config=ocp.args.JsonSave(config)))

    def save_best(self, step: int, params, metrics: dict[str, float]) -> None:
        if self.best is not None:
            self.best.save(step, force=True, metrics=metrics, args=ocp.args.Composite(
                params=ocp.args.StandardSave(params)))

    def restore(self, step: int, abstract_state, data_iterator):
        """Restores step ``step`` into ``abstract_state``'s shapes and shardings; sets the iterator."""
        out = self.latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(data_iterator)))
        return out.state

    def wait(self) -> None:
        self.latest.wait_until_finished()
        if self.best is not None:
            self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        if self.best is not None:
            self.best.close()


@contextlib.contextmanager
def quiet_orbax():
    """Orbax's absl warnings off (e.g. "Given directory is read only" on every read-only load): reading a
    checkpoint prints nothing unless it fails."""
    from absl import logging as absl_logging

    old = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(old)


def read_params(workdir: str | os.PathLike, which: str = "best"):
    """The parameters of a training run: ``which="best"`` those of ``best/`` (the best eval metric)
    when it holds a step, else the latest of ``checkpoints/``; ``"latest"`` the latest. Restored onto
    one device whatever mesh saved them (a training mesh's sharding would make every inference call an
    SPMD program over all devices: on 8 host CPU devices, 7x slower than one)."""
    import warnings

    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    workdir = Path(workdir).absolute()
    one = jax.sharding.make_single_device_sharding(jax.devices()[0])
    for folder, item in ((("best", "params"),) if which == "best" else ()) + (("checkpoints", "state"),):
        if not (workdir / folder).is_dir():
            continue
        with quiet_orbax(), ocp.CheckpointManager(
                workdir / folder, item_names=(item,), options=ocp.CheckpointManagerOptions(read_only=True, create=False),
                item_handlers={item: ocp.PyTreeCheckpointHandler()}) as manager, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sharding info not provided")
            step = manager.latest_step()
            if step is None:
                continue
            meta = manager.item_metadata(step)[item]
            restore = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=one), getattr(meta, "tree", meta))
            tree = manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.PyTreeRestore(
                restore_args=restore)}))[item]
        return tree["params"] if item == "state" else tree
    raise FileNotFoundError(f"{workdir}: the run has no checkpoint yet (checkpoints/ is empty)")
