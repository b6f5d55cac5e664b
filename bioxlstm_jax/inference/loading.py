"""``load_lm(path)``: a language model and its params from a training workdir or a converted checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp

from bioxlstm_jax.nn import XLSTMLM
from bioxlstm_jax.nn.config import XLSTMConfig
from bioxlstm_jax.training.checkpoints import read_params

__all__ = ["load_lm"]


def load_lm(path: str | os.PathLike, which: str = "best", **changes) -> tuple[XLSTMLM, dict]:
    """``(XLSTMLM, params)`` from

    * a training workdir (``model.json`` + ``best/`` + ``checkpoints/``): ``which="best"`` takes the
      params with the best eval metric when there are any, else the latest; ``"latest"`` the latest;
    * a converted official checkpoint (``python -m bioxlstm_jax.convert``: ``model.json`` + ``params/``;
      ``config.json`` + ``params/`` from conversions before 2026-12-07).

    ``changes``: ``XLSTMConfig`` fields to change in the checkpoint's config (e.g. ``kernel="xla"``,
    ``dtype="bfloat16"``, ``chunk_size=128``); a change the parameters do not fit is a ``ValueError``.
    """
    path = Path(path).absolute()
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    model, params = _load(path, which)
    if not changes:
        return model, params
    changed = XLSTMLM(model.config.replace(**changes))
    expected = jax.eval_shape(changed.init, jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
    if jax.tree.map(jnp.shape, expected) != jax.tree.map(jnp.shape, params):
        raise ValueError(f"{path}: the checkpoint's parameters do not fit its model with "
                         + ", ".join(f"{k}={v!r}" for k, v in changes.items()))
    return changed, params


def _load(path: Path, which: str) -> tuple[XLSTMLM, dict]:
    if (path / "params").is_dir() and ((path / "model.json").is_file() or (path / "config.json").is_file()):
        from bioxlstm_jax.convert.checkpoint import load_converted

        model, params, _ = load_converted(path)
        return model, params
    if not (path / "model.json").is_file():
        raise FileNotFoundError(f"{path}: neither a training workdir (model.json, checkpoints/) nor a converted "
                                "checkpoint (model.json, params/)")
    try:
        config = XLSTMConfig.from_dict(json.loads((path / "model.json").read_text()))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path / 'model.json'}: line {e.lineno}: not valid JSON ({e.msg})") from None
    return XLSTMLM(config), read_params(path, which)
