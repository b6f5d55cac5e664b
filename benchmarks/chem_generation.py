"""Chem-xLSTM sampling throughput (molecules/s): our recurrent decoding against re-encoding the prefix
with a full forward per token, and against the official PyTorch ``xLSTMLMModel.step`` loop.

Every implementation samples ``config.batch`` molecules of ``config.tokens`` new tokens after ``[BEG]`` (no early
stop, so all do the same work; real molecules stop at ``[END]``, ~48 tokens on ChEMBL). Random weights
(throughput does not depend on them); float32 on CPU. Re-encoding runs the jitted full forward on the
prefix padded to a multiple of 16 (one compiled shape per bucket; compilation excluded). The official
model is ``xlstm.xLSTMLMModel`` at the same sizes, ``step`` with its carried state, ``torch.no_grad``.

    python benchmarks/chem_generation.py [--config.presets=small,chem_xlstm_15m] [--config.batch=64]

Writes ``chem_generation_<device>.json`` to the workdir (default ``benchmarks/results``).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from common import cli, save_results

from bioxlstm_jax import presets
from bioxlstm_jax.inference import generate
from bioxlstm_jax.nn import XLSTMLM

SMALL = dict(embedding_dim=128, num_blocks=2, mlstm_num_heads=4)


def _config(name, tokens):
    return presets.get("chem_xlstm_15m", context_length=tokens + 1, **(SMALL if name == "small" else {}))


def ours(name, B, tokens):
    cfg = _config(name, tokens)
    model = XLSTMLM(cfg)
    params = model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    prompt = np.ones((B, 1), np.int32)  # [BEG]
    run = lambda: generate(model, params, prompt, max_new_tokens=tokens, rng=jax.random.key(1))["tokens"]  # noqa: E731
    run()  # compile
    t = time.perf_counter()
    run()
    recurrent = time.perf_counter() - t

    forward = jax.jit(lambda x: model.apply({"params": params}, x))
    seq = np.ones((B, 1), np.int32)
    total, key = 0.0, jax.random.key(2)
    for k in range(tokens):
        width = -(-seq.shape[1] // 16) * 16
        padded = jnp.asarray(np.pad(seq, ((0, 0), (0, width - seq.shape[1]))))
        forward(padded).block_until_ready()  # compile this bucket (excluded)
        t = time.perf_counter()
        logits = forward(padded)[:, seq.shape[1] - 1]
        logits.block_until_ready()
        total += time.perf_counter() - t
        nxt = np.asarray(jax.random.categorical(jax.random.fold_in(key, k), logits))
        seq = np.concatenate([seq, nxt[:, None].astype(np.int32)], axis=1)
    return {"params": int(sum(x.size for x in jax.tree.leaves(params))),
            "recurrent_mol_per_s": B / recurrent, "reencode_mol_per_s": B / total}


def official(name, B, tokens):
    import torch

    torch.manual_seed(0)
    cfg = _config(name, tokens)
    from xlstm import mLSTMBlockConfig, mLSTMLayerConfig, xLSTMLMModel, xLSTMLMModelConfig

    model = xLSTMLMModel(xLSTMLMModelConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(
            num_heads=cfg.mlstm_num_heads, proj_factor=cfg.mlstm_proj_factor,
            conv1d_kernel_size=cfg.conv1d_kernel_size, qkv_proj_blocksize=cfg.qkv_proj_blocksize)),
        context_length=tokens + 1, num_blocks=cfg.num_blocks, embedding_dim=cfg.embedding_dim, vocab_size=cfg.vocab_size,
        bias=cfg.bias)).eval()

    def sample():
        idx, state = torch.ones((B, 1), dtype=torch.long), None
        with torch.no_grad():
            for _ in range(tokens):
                logits, state = model.step(idx, state)
                idx = torch.multinomial(torch.softmax(logits[:, -1], -1), 1)
        return idx

    sample()  # warm-up
    t = time.perf_counter()
    sample()
    return {"params": int(sum(p.numel() for p in model.parameters())), "official_step_mol_per_s": B / (time.perf_counter() - t)}


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.presets = "small,chem_xlstm_15m"
    c.batch = 64  # molecules sampled together
    c.tokens = 100  # new tokens per molecule
    return c


def bench(c, workdir):
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    rows = []
    print(f"{kind}: {c.batch} molecules x {c.tokens} tokens")
    print(f"{'model':>15} {'params':>10} {'recurrent mol/s':>16} {'re-encode mol/s':>16} {'official step mol/s':>20}")
    for name in c.presets.split(","):
        row = {"model": name, **ours(name, c.batch, c.tokens), **official(name, c.batch, c.tokens)}
        row["speedup_vs_reencode"] = row["recurrent_mol_per_s"] / row["reencode_mol_per_s"]
        row["speedup_vs_official"] = row["recurrent_mol_per_s"] / row["official_step_mol_per_s"]
        rows.append(row)
        print(f"{name:>15} {row['params']:>10,} {row['recurrent_mol_per_s']:>16.1f} {row['reencode_mol_per_s']:>16.1f} "
              f"{row['official_step_mol_per_s']:>20.1f}", flush=True)
    out = save_results(workdir, "chem_generation", {"benchmark": "chem_generation", "config": c.to_dict(),
                                                    "results": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    cli(bench, get_config)
