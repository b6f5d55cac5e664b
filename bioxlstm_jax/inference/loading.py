"""``load_lm(path)``: a language model and its params from a training workdir or a converted checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax

from bioxlstm_jax.nn.config import XLSTMConfig
from bioxlstm_jax.nn.model import XLSTMLM

__all__ = ["load_lm", "restore_params"]


def _restore_params(step_dir: Path, item: str):
    import warnings

    import orbax.checkpoint as ocp

    # onto one device, whatever mesh saved it: a training mesh's sharding would make every inference
    # call an SPMD program over all devices (on 8 host CPU devices, 7x slower than one)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with ocp.PyTreeCheckpointer() as ckptr, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sharding info not provided")
        meta = ckptr.metadata(step_dir / item).item_metadata
        args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=one), getattr(meta, "tree", meta))
        tree = ckptr.restore(step_dir / item, restore_args=args)
    return tree["params"] if item == "state" else tree


def _latest_step(d: Path) -> Path | None:
    steps = sorted((int(p.name), p) for p in d.iterdir() if p.is_dir() and p.name.isdigit()) if d.is_dir() else []
    return steps[-1][1] if steps else None


def load_lm(path: str | os.PathLike, which: str = "best") -> tuple[XLSTMLM, dict]:
    """``(XLSTMLM, params)`` from

    * a training workdir (``model.json`` + ``best/`` + ``checkpoints/``): ``which="best"`` takes the
      params with the best eval metric when there are any, else the latest; ``"latest"`` the latest;
    * a converted official checkpoint (``python -m bioxlstm_jax.convert``: ``config.json`` + ``params/``).
    """
    path = Path(path).absolute()
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    if (path / "params").is_dir() and (path / "config.json").is_file():
        from bioxlstm_jax.convert.checkpoint import load_converted

        model, params, _ = load_converted(path)
        return model, params
    if not (path / "model.json").is_file():
        raise FileNotFoundError(f"{path}: neither a training workdir (model.json, checkpoints/) nor a converted "
                                "checkpoint (config.json, params/)")
    try:
        config = XLSTMConfig.from_dict(json.loads((path / "model.json").read_text()))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path / 'model.json'}: line {e.lineno}: not valid JSON ({e.msg})") from None
    return XLSTMLM(config), restore_params(path, which)


def restore_params(workdir: str | os.PathLike, which: str = "best"):
    """The params of a training workdir: ``"best"`` (best eval metric, else the latest) or ``"latest"``."""
    path = Path(workdir).absolute()
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    best = _latest_step(path / "best") if which == "best" else None
    if best is not None:
        return _restore_params(best, "params")
    latest = _latest_step(path / "checkpoints")
    if latest is None:
        raise FileNotFoundError(f"{path}: the run has no checkpoint yet (checkpoints/ is empty)")
    return _restore_params(latest, "state")
