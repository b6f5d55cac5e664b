"""Prot-xLSTM inference throughput: zero-shot fitness scoring and generation, with the recurrent
state against recomputing the prefix.

* fitness: mutants/s of ``proteingym.single_site_scores`` (one cached prefill of the homolog
  context, positions scored in batches from the state) against ``naive_single_site_scores`` (a full
  forward of context + query per position, as re-prefilling per mutant does); 19 mutants per position.
* generation: new tokens/s of ``inference.generate`` (segmented prefill, then O(1) steps; the time
  includes the prefill) against re-encoding the whole prefix with a full forward for every new token.

Real data: the BLAT_ECOLX ColabFold homologs shipped in the package. Random weights (throughput does
not depend on them). Timings exclude compilation (one warm-up call per shape).

    python benchmarks/prot_inference.py [--config.models=small,prot_xlstm_26m] [--config.context_tokens=4000]

Writes ``prot_inference_<device>.json`` to the workdir (default ``benchmarks/results``).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
from common import cli, save_results

from bioxlstm_jax import presets
from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data.formats import read_msa
from bioxlstm_jax.data.protein import CLS
from bioxlstm_jax.evaluation import proteingym as pg
from bioxlstm_jax.inference import generate
from bioxlstm_jax.inference.protein import context_prompt
from bioxlstm_jax.nn import XLSTMLM

MODELS = {"small": dict(embedding_dim=128, num_blocks=2, chunk_size=64), "prot_xlstm_26m": {}}


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - t, out


def bench_model(name, context_tokens, positions, naive_positions, new_tokens):
    cfg = presets.get("prot_xlstm_26m", **MODELS[name])
    model = XLSTMLM(cfg)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
    msa = [r for _, r in read_msa(asset_path("protein", "BLAT_ECOLX", "BLAT_ECOLX_ColabFold_2202_poet.a3m.gz"))]
    wt = pg.match_columns(msa[0])
    context = pg.sample_context(msa, wt, seed=0, max_tokens=context_tokens)
    n_ctx = sum(len(p) + 1 for p in context)
    pos = list(range(positions))
    pg.single_site_scores(model, params, context, pos[:8], batch_size=8, progress=False)  # compile
    t_cached, _ = _timed(lambda: pg.single_site_scores(model, params, context, pos, batch_size=8, progress=False))
    pg.naive_single_site_scores(model, params, context, [0])  # compile (one shape for all positions)
    t_naive, _ = _timed(lambda: pg.naive_single_site_scores(model, params, context, pos[:naive_positions]))
    fitness = {"context_tokens": n_ctx, "positions_cached": positions, "positions_naive": naive_positions,
               "cached_mutants_per_s": 19 * positions / t_cached, "naive_mutants_per_s": 19 * naive_positions / t_naive}
    fitness["speedup"] = fitness["cached_mutants_per_s"] / fitness["naive_mutants_per_s"]

    prompt, ppos = context_prompt(context[:-1])
    gen = lambda: generate(model, params, prompt[None], ppos[None], max_new_tokens=new_tokens,  # noqa: E731
                           rng=jax.random.PRNGKey(0), top_k=10)["tokens"]
    gen()  # compile
    t_rec, _ = _timed(gen)
    forward = jax.jit(lambda t, p: model.apply({"params": params}, t, p)[:, -1])
    toks, poss = list(prompt), list(ppos)
    rng = jax.random.PRNGKey(0)
    times = []
    for k in range(new_tokens):  # each length compiles once; time only the forward of a compiled shape
        t, p = jnp.asarray([toks]), jnp.asarray([poss])
        forward(t, p).block_until_ready()
        dt, logits = _timed(lambda: forward(t, p))
        times.append(dt)
        nxt = int(jax.random.categorical(jax.random.fold_in(rng, k), logits[0]))
        toks.append(nxt)
        poss.append(0 if nxt == CLS else poss[-1] + 1)
    generation = {"prompt_tokens": len(prompt), "new_tokens": new_tokens,
                  "recurrent_tokens_per_s": new_tokens / t_rec, "reencode_tokens_per_s": new_tokens / sum(times)}
    generation["speedup"] = generation["recurrent_tokens_per_s"] / generation["reencode_tokens_per_s"]
    return {"model": name, "params": int(sum(x.size for x in jax.tree.leaves(params))), "fitness": fitness,
            "generation": generation}


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.models = "small,prot_xlstm_26m"
    c.context_tokens = 4000
    c.positions = 64
    c.naive_positions = 4
    c.new_tokens = 16
    return c


def bench(c, workdir):
    results = []
    print(f"{'model':16} {'params':>9} {'ctx tok':>8} | {'fitness mut/s cached':>20} {'naive':>8} {'x':>6} | "
          f"{'gen tok/s recurrent':>19} {'re-encode':>9} {'x':>6}")
    for name in c.models.split(","):
        r = bench_model(name, c.context_tokens, c.positions, c.naive_positions, c.new_tokens)
        results.append(r)
        f, g = r["fitness"], r["generation"]
        print(f"{name:16} {r['params']:>9,} {f['context_tokens']:>8} | {f['cached_mutants_per_s']:>20.1f} "
              f"{f['naive_mutants_per_s']:>8.2f} {f['speedup']:>6.1f} | {g['recurrent_tokens_per_s']:>19.1f} "
              f"{g['reencode_tokens_per_s']:>9.2f} {g['speedup']:>6.1f}", flush=True)
    out = save_results(workdir, "prot_inference", {"config": c.to_dict(), "results": results}, extra_versions=())
    print(f"wrote {out}")


if __name__ == "__main__":
    cli(bench, get_config)
