"""Orbax checkpoints of the whole training run: train state, data-iterator state and config.

``<workdir>/checkpoints/<step>/`` keeps the latest ``keep`` steps (async writes; an interrupted
write never becomes visible). ``<workdir>/best/<step>/`` keeps the parameters with the best eval
metric. Restoring takes an abstract state whose shardings may differ from the saved ones (another
mesh, FSDP on or off). The data-iterator state is saved per process (grain's handler) and needs the
same number of processes on restore.
"""

from __future__ import annotations

import os
from pathlib import Path

import grain
import orbax.checkpoint as ocp

__all__ = ["Checkpoints"]


class Checkpoints:
    def __init__(self, workdir: str | os.PathLike, *, keep: int = 3, async_save: bool = True,
                 best_metric: str | None = None, best_mode: str = "min"):
        workdir = Path(workdir).absolute()
        self.latest = ocp.CheckpointManager(
            workdir / "checkpoints",
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                                 create=True))
        self.best = None
        if best_metric:
            self.best = ocp.CheckpointManager(
                workdir / "best",
                options=ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=lambda m: m[best_metric],
                                                     best_mode=best_mode, enable_async_checkpointing=async_save,
                                                     create=True))

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

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
