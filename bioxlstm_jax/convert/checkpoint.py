"""Read the three Bio-xLSTM checkpoint formats and write/read converted orbax checkpoints."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bioxlstm_jax.convert.torch_weights import (
    config_from_chem_xlstm,
    config_from_dna_xlstm,
    config_from_prot_xlstm,
    params_from_state_dict,
)
from bioxlstm_jax.nn.config import XLSTMConfig
from bioxlstm_jax.nn.lm import XLSTMLM

__all__ = ["read_official_checkpoint", "convert_checkpoint", "save_converted", "load_converted"]


def _read_json(path: Path) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None


def _torch_load(path: Path) -> dict:
    import torch  # only conversion needs torch

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt file?): {reason}") from None
    if isinstance(obj, dict) and "state_dict" in obj:  # Lightning
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return obj


def _detect(src: Path) -> str:
    if src.is_file() and src.suffix == ".ckpt":
        return "dna"
    if (src / "config.json").exists() and (src / "pytorch_model.bin").exists():
        return "prot"
    if (src / "model.pt").exists():
        return "chem"
    if (src / "model_config.json").exists():
        return "dna"
    raise ValueError(
        f"{src}: cannot tell the format: expected config.json + pytorch_model.bin (Prot-xLSTM), a .ckpt or a "
        "run dir with model_config.json (DNA-xLSTM), or model.pt + init_arguments.json (Chem-xLSTM)"
    )


def read_official_checkpoint(src, *, fmt: str = "auto", model_config=None, n_heads: int | None = None,
                             slstm_layout: str = "cuda") -> tuple[XLSTMConfig, dict, dict]:
    """Official checkpoint -> ``(config, params, extras)``; extras holds Chem-xLSTM's ``vocab``."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist")
    fmt = _detect(src) if fmt == "auto" else fmt
    extras: dict[str, Any] = {}
    if fmt == "prot":
        cfg = config_from_prot_xlstm(_read_json(src / "config.json"))
        sd = _torch_load(src / "pytorch_model.bin")
    elif fmt == "dna":
        if src.is_dir():
            ckpts = sorted(src.rglob("*.ckpt"))
            if not ckpts:
                raise FileNotFoundError(f"{src}: no .ckpt file below this directory")
            ckpt, run_dir = ckpts[0], src
        else:
            ckpt, run_dir = src, next((p for p in src.parents if (p / "model_config.json").exists()), src.parent)
        mc = Path(model_config) if model_config else run_dir / "model_config.json"
        if not mc.exists():
            raise FileNotFoundError(f"{mc} not found: pass --model-config")
        cfg = config_from_dna_xlstm(_read_json(mc))
        sd = _torch_load(ckpt)
    elif fmt == "chem":
        if n_heads is None:
            raise ValueError("Chem-xLSTM checkpoints need n_heads (the '_he{n}' of the run name)")
        args_file = next((p / "init_arguments.json" for p in (src, src.parent) if (p / "init_arguments.json").exists()), None)
        if args_file is None:
            raise FileNotFoundError(f"init_arguments.json not found in {src} or {src.parent}")
        init_args = _read_json(args_file)
        cfg = config_from_chem_xlstm(init_args, n_heads)
        sd = _torch_load(src / "model.pt")
        if "token2label" in init_args:
            extras["vocab"] = init_args["token2label"]
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return cfg, params_from_state_dict(sd, cfg, slstm_layout=slstm_layout), extras


def save_converted(dst, config: XLSTMConfig, params: dict, extras: dict | None = None) -> None:
    """Write ``dst/params`` (orbax), ``dst/model.json`` (the ``XLSTMConfig``, as a training workdir's) and
    optional ``dst/vocab.json`` atomically."""
    import orbax.checkpoint as ocp

    dst = Path(dst).absolute()
    if dst.exists():
        raise FileExistsError(f"{dst} exists; choose a new directory")
    tmp = Path(tempfile.mkdtemp(prefix=dst.name + ".tmp", dir=dst.parent))
    try:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp / "params", jax.tree_util.tree_map(np.asarray, params))
        (tmp / "model.json").write_text(json.dumps(config.to_dict(), indent=2))
        if extras and "vocab" in extras:
            (tmp / "vocab.json").write_text(json.dumps(extras["vocab"], indent=2))
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_converted(path) -> tuple[XLSTMLM, dict, dict]:
    """A directory written by ``save_converted`` -> ``(XLSTMLM, params, extras)``. Its model is
    ``model.json`` (``config.json`` in conversions before 2026-12-07)."""
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    model_file = path / "model.json" if (path / "model.json").is_file() else path / "config.json"
    cfg = XLSTMConfig.from_dict(_read_json(model_file))
    from bioxlstm_jax.training.checkpoints import quiet_orbax

    with quiet_orbax(), ocp.StandardCheckpointer() as ckptr:
        params = ckptr.restore(path / "params")
    extras = {}
    if (path / "vocab.json").exists():
        extras["vocab"] = _read_json(path / "vocab.json")
    return XLSTMLM(cfg), params, extras


def check_fits(config: XLSTMConfig, params: dict, src="") -> None:
    """Raises ``ValueError`` unless ``params`` has exactly the tree and shapes ``XLSTMLM(config)`` makes
    (a config read wrongly, e.g. a wrong ``n_heads``, would give a checkpoint no model can apply)."""
    import jax.numpy as jnp

    want = jax.eval_shape(lambda: XLSTMLM(config).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))["params"]
    flat = lambda t: {jax.tree_util.keystr(k): tuple(np.shape(v)) for k, v in jax.tree_util.tree_leaves_with_path(t)}  # noqa: E731
    want, got = flat(want), flat(params)
    problems = [f"{k} missing" for k in want if k not in got] + [f"{k} unexpected" for k in got if k not in want]
    problems += [f"{k} is {got[k]} in the checkpoint, {want[k]} for the config" for k in want
                 if k in got and got[k] != want[k]]
    if problems:
        raise ValueError(f"{src}: the weights do not fit the model config read with them ({len(problems)} "
                         f"parameters, e.g. {'; '.join(problems[:3])}); check --format / --n-heads / --model-config")


def convert_checkpoint(src, dst, **kwargs) -> XLSTMConfig:
    """``read_official_checkpoint``, ``check_fits``, then ``save_converted``; returns the config."""
    cfg, params, extras = read_official_checkpoint(src, **kwargs)
    check_fits(cfg, params, src)
    save_converted(dst, cfg, params, extras)
    return cfg
