"""``load_lm(path)``: a language model and its params from a training workdir or a converted checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bioxlstm_jax.nn import XLSTMLM
from bioxlstm_jax.nn.config import XLSTMConfig
from bioxlstm_jax.training.checkpoints import read_params

__all__ = ["load_lm"]


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
    return XLSTMLM(config), read_params(path, which)
