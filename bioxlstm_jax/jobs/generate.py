"""Generation jobs: homolog-conditioned proteins (``prot_generate``) and SMILES with chemistry metrics
(``chem_generate``). Each is ``job(config, workdir)`` over the config of ``experiments/<job>.py`` and
writes its outputs into ``workdir``."""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections
import numpy as np

from bioxlstm_jax.data.protein import VOCAB
from bioxlstm_jax.io import atomic_write, write_json
from bioxlstm_jax.jobs.cli import load_model, model_changes, require, require_positive

__all__ = ["prot_generate", "chem_generate", "parse_spans"]


def parse_spans(text: str) -> list[tuple[int, int]]:
    """'31-40,80-85' (1-based, inclusive) -> [(30, 40), (79, 85)] (0-based, end-exclusive)."""
    spans = []
    for part in text.split(","):
        try:
            a, b = (int(x) for x in part.split("-"))
        except ValueError:
            a = b = 0
        if not 1 <= a <= b:
            raise ValueError(f"--config.spans: {part!r} is not '<first>-<last>' with 1 <= first <= last") from None
        spans.append((a - 1, b))
    return sorted(spans)


def prot_generate(c: ml_collections.ConfigDict, workdir: str) -> list[dict]:
    """Proteins decoded after a context of ``c.n_context`` homologs of ``c.msa`` (or inpainting of
    ``c.spans`` of ``c.target_seq``); writes ``workdir/generated.fasta`` (each header: log-likelihood,
    perplexity, token count, complete, valid) and returns the samples."""
    import jax

    from bioxlstm_jax.data.formats import read_msa
    from bioxlstm_jax.data.protein import clean_sequence
    from bioxlstm_jax.inference.generate import check_sampling
    from bioxlstm_jax.inference.protein import context_prompt, generate_proteins, inpainting_prompt
    from bioxlstm_jax.jobs.fitness import check_protein

    require(c, "ckpt", "msa")
    check_sampling(c.temperature, c.top_k, c.top_p, prefix="--config.")
    require_positive(c, "num_samples", "batch_size", "max_new_tokens", "segment_length", "context_devices")
    require_positive(c, "n_context", low=-1)
    if bool(c.target_seq) != bool(c.spans):
        raise ValueError("inpainting needs both --config.target_seq and --config.spans")
    spans = parse_spans(c.spans) if c.spans else None
    if c.target_seq:
        check_protein(c.target_seq.upper(), "--config.target_seq")
        outside = [f"{a + 1}-{b}" for a, b in spans or () if b > len(c.target_seq)]
        if outside:
            raise ValueError(f"--config.spans: {', '.join(outside)} reach past the target's {len(c.target_seq)} "
                             "residues")
    proteins = [p for p in (clean_sequence(r) for _, r in read_msa(c.msa)) if p]
    n = len(proteins) if c.n_context < 0 else min(c.n_context, len(proteins))
    order = np.random.default_rng(c.context_seed).permutation(len(proteins))[:n]
    context = [proteins[i] for i in order]
    model, params = load_model(c, vocab_size=len(VOCAB), domain="protein", causal=True)
    token_positions = None
    if c.target_seq:
        prompt, positions, token_positions = inpainting_prompt(context, c.target_seq.upper(), spans)
    else:
        prompt, positions = context_prompt(context)
    samples = generate_proteins(model, params, prompt, positions, num_samples=c.num_samples,
                                rng=jax.random.PRNGKey(c.seed), max_new_tokens=c.max_new_tokens,
                                temperature=c.temperature, top_k=c.top_k, top_p=c.top_p,
                                token_positions=token_positions, batch_size=c.batch_size,
                                segment_length=c.segment_length, context_devices=c.context_devices)
    out = Path(workdir) / "generated.fasta"
    atomic_write(out, "".join(
        f">sample_{i} log_likelihood={s['log_likelihood']:.4f} perplexity={s['perplexity']:.4f} "
        f"n_tokens={s['n_tokens']} complete={s['complete']} valid={s['valid']}\n{s['sequence']}\n"
        for i, s in enumerate(samples)))
    done = sum(s["complete"] for s in samples)
    print(f"wrote {len(samples)} proteins to {out} ({done} complete; context {n} proteins, "
          f"{len(prompt)} tokens); mean perplexity {np.mean([s['perplexity'] for s in samples]):.3f}")
    return samples


def _run_files(ckpt: Path) -> dict[str, str]:
    """The train / test SMILES files a chem_pretrain run used (its config.json), else the shipped ones."""
    from bioxlstm_jax.jobs.pretrain import chem_data_files

    saved = {}
    if (ckpt / "config.json").is_file():
        saved = {k: v for k, v in json.loads((ckpt / "config.json").read_text()).items()
                 if k in ("train", "valid", "test") and isinstance(v, str) and v}
    return chem_data_files(ml_collections.ConfigDict(saved))


def chem_generate(c: ml_collections.ConfigDict, workdir: str) -> dict:
    """``c.n`` SMILES sampled from ``[BEG]`` and scored (validity, uniqueness, novelty, scaffolds, internal
    diversity, FCD against ``c.reference``, property means); writes ``workdir/generated.json`` and, when
    any molecule is valid, ``generated_properties.png`` and ``generated_grid.png``. Returns the metrics."""
    import jax

    from bioxlstm_jax.data.smiles import read_smiles
    from bioxlstm_jax.evaluation import chem
    from bioxlstm_jax.inference import generate_smiles, load_lm, load_vocab
    from bioxlstm_jax.inference.generate import check_sampling

    require(c, "ckpt")
    check_sampling(c.temperature, c.top_k, c.top_p, prefix="--config.")
    require_positive(c, "n", low=2)
    require_positive(c, "batch_size")
    require_positive(c, "reference_size", low=0)
    ckpt = Path(c.ckpt)
    files = _run_files(ckpt)
    read = lambda p: [s for _, s in read_smiles(p)]  # noqa: E731
    reference = list(read_smiles(c.reference or files["test"]))
    if c.reference_size:
        reference = reference[:c.reference_size]
    unparsable = [where for (where, _), k in zip(reference, chem.canonical([s for _, s in reference])) if k is None]
    if unparsable:  # FCD and the property plots would silently drop them
        raise ValueError(f"{unparsable[0]}: RDKit cannot parse this reference SMILES ({len(unparsable)} of the "
                         f"{len(reference)} reference molecules do not parse); give --config.reference a file of "
                         "valid molecules")
    reference = [s for _, s in reference]
    model, params = load_lm(ckpt, **model_changes(c))
    vocab = load_vocab(ckpt)

    out = generate_smiles(model, params, vocab, c.n, jax.random.key(c.seed), batch_size=c.batch_size,
                          temperature=c.temperature, top_k=c.top_k, top_p=c.top_p)
    smiles = out["smiles"]
    metrics = chem.smiles_metrics(smiles, train=read(c.train or files["train"]), test=read(c.test or files["test"]))
    metrics["finished"] = float(np.mean(out["finished"]))
    valid = [s for s, k in zip(smiles, chem.canonical(smiles)) if k is not None]
    metrics["fcd"] = chem.fcd(valid, reference) if len(valid) >= 2 else float("nan")
    stem = Path(workdir) / "generated"
    gen_props, ref_props = chem.properties(valid), chem.properties(reference)
    for name in chem.PROPERTIES:
        metrics[f"{name}_mean"] = float(np.mean(gen_props[name])) if len(valid) else float("nan")
        metrics[f"reference_{name}_mean"] = float(np.mean(ref_props[name]))
    if len(valid):
        chem.plot_properties(gen_props, ref_props, f"{stem}_properties.png")
        chem.grid_image(valid, f"{stem}_grid.png")
    settings = {k: c[k] for k in ("ckpt", "n", "temperature", "top_k", "top_p", "seed")}
    write_json(f"{stem}.json", {"settings": settings, "reference": c.reference or files["test"], "metrics": metrics,
                                "smiles": smiles, "log_likelihood": out["log_likelihood"].tolist()})
    width = max(len(k) for k in metrics)
    for k, v in metrics.items():
        print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    print(f"wrote {stem}.json" + (f", {stem}_properties.png, {stem}_grid.png" if len(valid) else ""))
    return metrics
