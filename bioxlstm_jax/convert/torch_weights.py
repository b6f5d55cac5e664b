"""Import of official PyTorch xLSTM weights: the ``xlstm`` package and the three Bio-xLSTM repos.

All four share the NX-AI module names below a repo-specific prefix, so one mapping serves them:

* ``xlstm`` ``xLSTMLMModel``: no prefix.  Prot-xLSTM: ``backbone.``.  DNA-xLSTM Lightning: ``model.backbone.``
  (RCPS wrappers add ``.submodule``; ``token_embedding.embedding.weight``, ``lm_head.lm_head.weight``).
  Chem-xLSTM: ``model.``.
* The sLSTM recurrent kernel and bias are stored in the layout of the backend that trained them:
  ``"cuda"`` (DNA-xLSTM, the official default; ``_recurrent_kernel_`` (NH, DH, 4 DH), ``_bias_`` head-major)
  or ``"vanilla"`` (``_recurrent_kernel_`` (NH, 4 DH, DH), ``_bias_`` gate-major).
* The official sLSTM module ``fgate`` computes the input gate and ``igate`` the forget gate; they
  become our ``igate`` and ``fgate``.

Every tensor of the state dict must be used and every parameter filled, or a ValueError names the keys.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from bioxlstm_jax.nn.config import XLSTMConfig

__all__ = [
    "params_from_state_dict",
    "config_from_xlstm",
    "config_from_prot_xlstm",
    "config_from_dna_xlstm",
    "config_from_chem_xlstm",
    "from_torch_xlstm",
    "SLSTM_LAYOUTS",
]

SLSTM_LAYOUTS = ("cuda", "vanilla")
PREFIXES = ("model.backbone.", "backbone.", "model.")
# Buffers that carry no weights (masks, RoPE tables, RCPS complement maps).
_IGNORED = re.compile(r"(causal_mask|freqs_cos|freqs_sin|complement_map)$")


def _np(t) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().float().numpy()
    return np.asarray(t, np.float32)


def _normalise_keys(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in state_dict.items():
        name = key
        for prefix in PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        if _IGNORED.search(name):
            continue
        name = name.replace(".submodule.", ".")
        name = name.replace("token_embedding.embedding.", "token_embedding.").replace("lm_head.lm_head.", "lm_head.")
        if name in out:
            raise ValueError(f"two state-dict keys map to {name!r} (second: {key!r})")
        out[name] = _np(value)
    return out


def params_from_state_dict(
    state_dict: Mapping[str, Any], config: XLSTMConfig, *, slstm_layout: str = "cuda"
) -> dict:
    """Official (prefixed) state dict -> our ``XLSTMLM`` params (nested dict of float32 numpy arrays)."""
    if slstm_layout not in SLSTM_LAYOUTS:
        raise ValueError(f"slstm_layout must be one of {SLSTM_LAYOUTS}, got {slstm_layout!r}")
    sd = _normalise_keys(state_dict)
    used: set[str] = set()
    cfg = config

    def take(name: str) -> np.ndarray:
        if name not in sd:
            raise ValueError(f"state dict has no {name!r} (the config expects it); keys look like {sorted(sd)[:5]}")
        used.add(name)
        return sd[name]

    def dense(prefix: str, bias: bool) -> dict:
        d = {"kernel": take(prefix + ".weight").T}
        if bias:
            d["bias"] = take(prefix + ".bias")
        return d

    def conv(prefix: str) -> dict:
        return {"kernel": take(prefix + ".conv.weight")[:, 0, :].T, "bias": take(prefix + ".conv.bias")}

    def headwise(prefix: str, bias: bool) -> dict:
        d = {"weight": take(prefix + ".weight")}
        if bias:
            d["bias"] = take(prefix + ".bias")
        return d

    backbone: dict[str, Any] = {"token_embedding": {"embedding": take("token_embedding.weight")}}
    NH_s, DH_s = cfg.slstm_num_heads, cfg.slstm_head_dim
    for idx, kind in enumerate(cfg.block_types):
        p = f"xlstm_block_stack.blocks.{idx}."
        block: dict[str, Any] = {"xlstm_norm": {"weight": take(p + "xlstm_norm.weight")}}
        if kind == "m":
            x = p + "xlstm."
            block["xlstm"] = {
                "proj_up": dense(x + "proj_up", cfg.bias),
                "conv1d": conv(x + "conv1d"),
                "q_proj": headwise(x + "q_proj", cfg.bias),
                "k_proj": headwise(x + "k_proj", cfg.bias),
                "v_proj": headwise(x + "v_proj", cfg.bias),
                "igate": dense(x + "mlstm_cell.igate", True),
                "fgate": dense(x + "mlstm_cell.fgate", True),
                "outnorm": {"weight": take(x + "mlstm_cell.outnorm.weight")},
                "learnable_skip": take(x + "learnable_skip"),
                "proj_down": dense(x + "proj_down", cfg.bias),
            }
        else:
            x = p + "xlstm."
            R = take(x + "slstm_cell._recurrent_kernel_")
            b = take(x + "slstm_cell._bias_")
            if slstm_layout == "cuda":
                R = R.reshape(NH_s, DH_s, 4, DH_s)
                b = b.reshape(NH_s, 4, DH_s)
            else:
                R = R.reshape(NH_s, 4, DH_s, DH_s).transpose(0, 3, 1, 2)
                b = b.reshape(4, NH_s, DH_s).transpose(1, 0, 2)
            block["xlstm"] = {
                "conv1d": conv(x + "conv1d"),
                "igate": headwise(x + "fgate", False),  # official names are swapped (see module doc)
                "fgate": headwise(x + "igate", False),
                "zgate": headwise(x + "zgate", False),
                "ogate": headwise(x + "ogate", False),
                "recurrent_kernel": R,
                "bias": b,
                "group_norm": {"weight": take(x + "group_norm.weight")},
            }
            block["ffn_norm"] = {"weight": take(p + "ffn_norm.weight")}
            block["ffn"] = {"proj_up": dense(p + "ffn.proj_up", False), "proj_down": dense(p + "ffn.proj_down", False)}
        backbone[f"block_{idx}"] = block
    if cfg.add_post_blocks_norm:
        backbone["post_blocks_norm"] = {"weight": take("xlstm_block_stack.post_blocks_norm.weight")}
    params: dict[str, Any] = {"backbone": backbone}
    if not cfg.tie_weights:
        params["lm_head"] = {"kernel": take("lm_head.weight").T}
    unused = sorted(set(sd) - used)
    if unused:
        raise ValueError(f"state-dict tensors not used by the config (wrong config?): {unused[:10]}")
    return params


def _ffn_fields(ff: Mapping[str, Any]) -> dict:
    if ff.get("act_fn", "gelu") != "gelu":
        raise ValueError(f"only the gated GELU feed-forward is supported, got act_fn={ff.get('act_fn')!r}")
    return dict(
        ffn_proj_factor=float(ff.get("proj_factor", 1.3)),
        ffn_round_up=bool(ff.get("round_proj_up_dim_up", True)),
        ffn_round_to=int(ff.get("round_proj_up_to_multiple_of", 64)),
    )


def _mlstm_fields(m: Mapping[str, Any]) -> dict:
    if int(m.get("round_proj_up_to_multiple_of", 64)) != 64:
        raise ValueError("the mLSTM inner dim must be rounded to a multiple of 64")
    return dict(
        mlstm_num_heads=int(m.get("num_heads", 4)),
        mlstm_proj_factor=float(m.get("proj_factor", 2.0)),
        mlstm_round_up=bool(m.get("round_proj_up_dim_up", True)),
        qkv_proj_blocksize=int(m.get("qkv_proj_blocksize", 4)),
        conv1d_kernel_size=int(m.get("conv1d_kernel_size", 4)),
        mlstm_conv_causal=bool(m.get("conv1d_causal", True)),
    )


def config_from_xlstm(cfg: Mapping[str, Any]) -> XLSTMConfig:
    """``asdict(xLSTMLMModelConfig)`` of the ``xlstm`` package (or Prot-xLSTM's extension) -> ``XLSTMConfig``."""
    fields: dict[str, Any] = dict(
        vocab_size=int(cfg["vocab_size"]),
        embedding_dim=int(cfg["embedding_dim"]),
        num_blocks=int(cfg["num_blocks"]),
        context_length=int(cfg.get("context_length", 1024)),
        add_post_blocks_norm=bool(cfg.get("add_post_blocks_norm", True)),
        tie_weights=bool(cfg.get("tie_weights", False)),
        bias=bool(cfg.get("bias", False)),
    )
    mblock, sblock = cfg.get("mlstm_block"), cfg.get("slstm_block")
    slstm_at = cfg.get("slstm_at", [])
    if slstm_at == "all" or not mblock:
        slstm_at = list(range(fields["num_blocks"]))
    fields["slstm_at"] = tuple(slstm_at)
    if mblock:
        fields.update(_mlstm_fields(mblock["mlstm"]))
    if slstm_at:
        s = sblock["slstm"]
        fields.update(
            slstm_num_heads=int(s.get("num_heads", 4)),
            slstm_conv1d_kernel_size=int(s.get("conv1d_kernel_size", 4)),
            slstm_conv_causal=bool(s.get("conv1d_causal", True)),
            slstm_bias_init=s.get("bias_init", "powerlaw_blockdependent"),
        )
        if sblock.get("feedforward") is None:
            raise ValueError("sLSTM blocks without a feed-forward are not supported")
        fields.update(_ffn_fields(sblock["feedforward"]))
    pe = cfg.get("position_embeddings", "none")
    if pe == "rot_1d":
        fields.update(rope="inner", rope_base=float(cfg.get("rope_base_frequency", 10_000)))
    elif pe != "none":
        raise ValueError(f"position_embeddings={pe!r} is not supported (only 'none' and 'rot_1d')")
    return XLSTMConfig(**fields)


def config_from_prot_xlstm(config_json: Mapping[str, Any]) -> XLSTMConfig:
    """Prot-xLSTM ``config.json`` (``asdict`` of its ``xLSTMLMModelConfig``) -> ``XLSTMConfig`` (chunkwise)."""
    cfg = config_from_xlstm(config_json)
    chunk = int(config_json.get("mlstm_block", {}).get("mlstm", {}).get("chunk_size", 64))
    return cfg.replace(chunk_size=chunk)


def config_from_dna_xlstm(model_config: Mapping[str, Any]) -> XLSTMConfig:
    """DNA-xLSTM ``model_config.json`` (its HF ``xLSTMConfig`` kwargs) -> ``XLSTMConfig``."""
    c = dict(model_config)
    if c.get("s_position_embeddings"):
        raise ValueError("s_position_embeddings (scaled sinusoidal embedding) is not supported")
    if c.get("tie_weights"):
        raise ValueError("tie_weights=True DNA-xLSTM checkpoints are not supported")
    n_layer = int(c.get("n_layer", 4))
    if c.get("bidirectional"):
        bidir = "alternating" if c.get("bidirectional_alternating") else "sum"
    elif c.get("m_backend_bidirectional"):
        bidir = "native"
    else:
        bidir = "none"
    cm = c.get("complement_map") or None
    if isinstance(cm, Mapping):
        cm = tuple(int(cm[k]) for k in sorted(cm, key=int))
    return XLSTMConfig(
        vocab_size=int(c.get("vocab_size", 12)),
        embedding_dim=int(c.get("d_model", 256)),
        num_blocks=n_layer,
        slstm_at=tuple(c.get("s_lstm_at", [])),
        context_length=int(c.get("max_length", 1024)),
        mlstm_num_heads=int(c.get("m_num_heads", 4)),
        mlstm_proj_factor=float(c.get("m_proj_factor", 2.0)),
        mlstm_round_up=False,
        qkv_proj_blocksize=int(c.get("m_qkv_proj_blocksize", 4)),
        conv1d_kernel_size=int(c.get("m_conv1d_kernel_size", 4)),
        mlstm_conv_causal=bool(c.get("m_conv1d_causal", True)),
        bias=bool(c.get("m_bias", False)),
        slstm_num_heads=int(c.get("s_num_heads", 4)),
        slstm_conv1d_kernel_size=int(c.get("s_conv1d_kernel_size", 4)),
        slstm_conv_causal=bool(c.get("s_conv1d_causal", True)),
        ffn_proj_factor=float(c.get("s_proj_factor", 1.3)),
        ffn_round_up=bool(c.get("s_round_proj_up_dim_up", True)),
        ffn_round_to=int(c.get("s_round_proj_up_to_multiple_of", 64)),
        rope="head" if c.get("m_position_embeddings") else "none",
        bidirectional=bidir,
        rcps=bool(c.get("rcps", False)),
        complement_map=cm,
        form="parallel" if bidir == "native" else "chunkwise",
        chunk_size=int(c.get("m_chunk_size", 64)),
    )


def config_from_chem_xlstm(init_arguments: Mapping[str, Any], n_heads: int) -> XLSTMConfig:
    """Chem-xLSTM ``init_arguments.json`` -> ``XLSTMConfig``.

    ``n_heads`` must be given: Chem-xLSTM stores 1 for every xLSTM (the run name has ``_he{n}``).
    """
    a = init_arguments
    return XLSTMConfig(
        vocab_size=int(a["vocab_size"]),
        embedding_dim=int(a["model_dim"]),
        num_blocks=int(a["n_layers"]),
        context_length=int(a.get("sequence_length", 100)),
        mlstm_num_heads=int(n_heads),
    )


def from_torch_xlstm(torch_model, **config_changes):
    """An official ``xlstm.xLSTMLMModel`` -> ``(XLSTMLM, params)`` with the same logits.

    ``config_changes`` override compute options of the converted config (``form``, ``dtype``, ...).
    """
    import dataclasses

    from bioxlstm_jax.nn.lm import XLSTMLM

    tcfg = dataclasses.asdict(torch_model.config)
    cfg = config_from_xlstm(tcfg).replace(**config_changes)
    layout = "cuda"
    if cfg.slstm_at:
        layout = tcfg["slstm_block"]["slstm"].get("backend", "cuda")
    params = params_from_state_dict(torch_model.state_dict(), cfg, slstm_layout=layout)
    return XLSTMLM(cfg), params
