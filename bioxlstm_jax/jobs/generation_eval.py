"""``prot_generation_eval``: Prot-xLSTM's generation benchmark (``experiments/prot_generation_eval.py``).

For each family (an MSA): sample proteins conditioned on ``n_context`` of its members, for every
(n_context, temperature, top_k, top_p) of the grid; score every sample and up to ``max_natural`` of the
family's own proteins (``evaluation.protein_generation``: length, Hamming distances to the family after
a global alignment, HMMER score against the family's profile); then per family and setting the
``family_summary`` of the lowest-perplexity samples, and over the families the reference's table.
A family's samples and scores are written to ``families/<id>.csv`` when it is done; a re-run skips the
families that have one (resumable per family).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import ml_collections
import numpy as np

from bioxlstm_jax.data.protein import VOCAB
from bioxlstm_jax.io import atomic_path, atomic_write, write_json
from bioxlstm_jax.jobs.cli import load_model, require, require_positive

__all__ = ["prot_generation_eval", "parse_settings", "family_files"]

SAMPLE_COLUMNS = ("family", "kind", "n_context", "temperature", "top_k", "top_p", "sequence", "perplexity", "complete",
                  "valid", "sequence_length", "min_hamming", "median_hamming", "mean_hamming", "std_hamming",
                  "hmmer_score", "hmmer_evalue")


def parse_settings(text: str) -> list[tuple[float, int, float]]:
    """``"T:top_k:top_p,..."`` -> ``[(T, top_k, top_p), ...]`` (``--config.settings``)."""
    out = []
    for part in text.split(","):
        try:
            t, k, p = part.split(":")
            setting = (float(t), int(k), float(p))
        except ValueError:
            raise ValueError(f"--config.settings: {part!r} is not 'temperature:top_k:top_p' "
                             "(e.g. 1.0:10:0.95)") from None
        if setting[0] < 0 or setting[1] < 0 or not 0 < setting[2] <= 1:
            raise ValueError(f"--config.settings: {part!r}: expected temperature >= 0, top_k >= 0, 0 < top_p <= 1")
        out.append(setting)
    return out


def family_files(c) -> dict[str, str]:
    """``{family id: MSA path}``: ``--config.msa`` (one family), else the families of ``--config.msa_dir``
    (an OpenProteinSet tree or a folder of MSA files; ``--config.families``: a split file of ids), else the
    two held-out clusters shipped with the package."""
    from bioxlstm_jax.assets import asset_path
    from bioxlstm_jax.data.tfds_builders import _split_ids, find_clusters

    if c.msa:
        if not Path(c.msa).is_file():
            raise FileNotFoundError(f"--config.msa={c.msa}: no such file")
        name = Path(c.msa).name
        for suffix in (".gz", ".a3m", ".a2m", ".fasta", ".fa", ".sto"):
            name = name[: -len(suffix)] if name.endswith(suffix) else name
        return {name: str(c.msa)}
    root = c.msa_dir or asset_path("protein", "clusters")
    split = c.families or (None if c.msa_dir else str(asset_path("protein", "eval_clusters.txt")))
    found = find_clusters(root)
    if split is None:
        return found
    ids = _split_ids(split, "families")
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValueError(f"{split}: {len(missing)} families not in {root} (first: {missing[0]!r})")
    return {i: found[i] for i in ids}


def _rows_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SAMPLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _read_rows(path: Path) -> list[dict]:
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for k in ("n_context", "top_k", "sequence_length"):
                r[k] = int(r[k])
            for k in ("temperature", "top_p", "perplexity", "min_hamming", "median_hamming", "mean_hamming",
                      "std_hamming", "hmmer_score", "hmmer_evalue"):
                r[k] = float(r[k]) if r[k] != "" else float("nan")
            for k in ("complete", "valid"):
                r[k] = r[k] == "True"
            rows.append(r)
    return rows


def _score_family(c, family: str, path: str, model, params, settings, rng_seed: int) -> list[dict]:
    """Samples of every setting and the natural proteins of one family, scored."""
    import jax
    from tqdm.auto import tqdm

    from bioxlstm_jax.data.formats import read_msa
    from bioxlstm_jax.data.protein import clean_sequence
    from bioxlstm_jax.evaluation import protein_generation as pgen
    from bioxlstm_jax.inference.protein import context_prompt, generate_proteins

    rows = [r for _, r in read_msa(path)]
    members = [p for p in (clean_sequence(r) for r in rows) if p]
    hmm = pgen.family_hmm(rows)
    rng = np.random.default_rng(rng_seed)
    natural = [members[i] for i in sorted(rng.permutation(len(members))[:c.max_natural])]
    out = [{"family": family, "kind": "natural", "n_context": 0, "temperature": 0.0, "top_k": 0, "top_p": 0.0,
            "sequence": p, "perplexity": float("nan"), "complete": True, "valid": True, **s}
           for p, s in zip(natural, pgen.score_proteins(natural, members, hmm))]
    grid = [(n, *s) for n in c.n_contexts for s in settings]
    bar = tqdm(grid, desc=family, unit="setting", disable=not c.progress)
    for k, (n_context, temperature, top_k, top_p) in enumerate(bar):
        n = len(members) if n_context < 0 else min(n_context, len(members))
        context = [members[i] for i in np.random.default_rng(rng_seed + k).permutation(len(members))[:n]]
        prompt, positions = context_prompt(context)
        samples = generate_proteins(model, params, prompt, positions, num_samples=c.num_samples,
                                    rng=jax.random.fold_in(jax.random.PRNGKey(c.seed), rng_seed * 1000 + k),
                                    max_new_tokens=c.max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                    batch_size=c.batch_size, segment_length=c.segment_length, progress=False)
        # a sample with other tokens than residues (or none) is kept, unscored (NaN), and left out of the summary
        scorable = [s for s in samples if s["valid"] and s["sequence"]]
        scores = iter(pgen.score_proteins([s["sequence"] for s in scorable], members, hmm) if scorable else [])
        unscored = dict.fromkeys(pgen.SCORES + ("median_hamming", "mean_hamming", "std_hamming", "hmmer_evalue"),
                                 float("nan"))
        for s in samples:
            sc = next(scores) if s["valid"] and s["sequence"] else {**unscored, "sequence_length": len(s["sequence"])}
            out.append({"family": family, "kind": "sample", "n_context": n_context, "temperature": temperature,
                        "top_k": top_k, "top_p": top_p, "sequence": s["sequence"], "perplexity": s["perplexity"],
                        "complete": s["complete"], "valid": bool(s["valid"] and s["sequence"]), **sc})
    bar.close()
    return out


def _plot(rows: list[dict], path: Path) -> None:
    """Per setting, each score's distribution against the natural proteins'; each score against perplexity."""
    from matplotlib.figure import Figure  # no pyplot: never touches the caller's backend

    from bioxlstm_jax.evaluation.protein_generation import SCORES

    samples = [r for r in rows if r["kind"] == "sample" and r["valid"]]  # the scored ones
    keys = sorted({(r["n_context"], r["temperature"], r["top_k"], r["top_p"]) for r in samples})
    labels = ["natural"] + [f"n{n} T{t:g} k{k} p{p:g}" for n, t, k, p in keys]
    fig = Figure(figsize=(4.2 * len(SCORES), 7.5))
    axes = fig.subplots(2, len(SCORES))
    for j, score in enumerate(SCORES):
        data = [[r[score] for r in rows if r["kind"] == "natural"]]
        data += [[r[score] for r in samples if (r["n_context"], r["temperature"], r["top_k"], r["top_p"]) == key]
                 for key in keys]
        data = [[v for v in d if np.isfinite(v)] or [np.nan] for d in data]
        axes[0, j].boxplot(data, showfliers=False)
        axes[0, j].set_xticks(range(1, len(labels) + 1), labels, rotation=60, ha="right", fontsize=7)
        axes[0, j].set_title(score)
        axes[1, j].scatter([r["perplexity"] for r in samples], [r[score] for r in samples], s=6, alpha=0.6)
        axes[1, j].set_xlabel("perplexity")
        axes[1, j].set_ylabel(score)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def prot_generation_eval(c: ml_collections.ConfigDict, workdir: str) -> dict:
    """Every family of ``family_files(c)`` (resumable per family); writes ``samples.csv``, ``summary.csv``,
    ``summary.json`` and ``scores.png`` to ``workdir`` and returns the summary."""
    from bioxlstm_jax.evaluation.protein_generation import family_summary, summarize_families

    require(c, "ckpt")
    require_positive(c, "num_samples", "batch_size", "max_new_tokens", "segment_length", "max_natural", "best")
    settings = parse_settings(c.settings)
    if not c.n_contexts or any(not isinstance(n, int) or n == 0 or n < -1 for n in c.n_contexts):
        raise ValueError(f"--config.n_contexts={c.n_contexts!r}: expected context sizes >= 1 (-1: the whole family)")
    families = family_files(c)
    workdir = Path(workdir)
    done_dir = workdir / "families"
    model = params = None
    all_rows = []
    for i, (family, path) in enumerate(families.items()):
        done = done_dir / f"{family}.csv"
        if done.is_file():
            all_rows += _read_rows(done)
            continue
        if model is None:
            model, params = load_model(c, vocab_size=len(VOCAB), domain="protein", causal=True)
        rows = _score_family(c, family, path, model, params, settings, rng_seed=c.seed + i)
        atomic_write(done, _rows_csv(rows))
        all_rows += rows
    per_setting = []
    keys = sorted({(r["n_context"], r["temperature"], r["top_k"], r["top_p"]) for r in all_rows if r["kind"] == "sample"})
    for family in families:
        natural = [r for r in all_rows if r["family"] == family and r["kind"] == "natural"]
        for key in keys:
            samples = [r for r in all_rows if r["family"] == family and r["kind"] == "sample" and r["valid"]
                       and (r["n_context"], r["temperature"], r["top_k"], r["top_p"]) == key]
            if samples:
                per_setting.append({"family": family, "n_context": key[0], "temperature": key[1], "top_k": key[2],
                                    "top_p": key[3], **family_summary(samples, natural, best=c.best)})
    table = {}
    for key in keys:
        rows = [r for r in per_setting if (r["n_context"], r["temperature"], r["top_k"], r["top_p"]) == key]
        table[f"n_context={key[0]} temperature={key[1]:g} top_k={key[2]} top_p={key[3]:g}"] = summarize_families(
            [{k: v for k, v in r.items() if k not in ("family", "n_context", "temperature", "top_k", "top_p")}
             for r in rows])
    atomic_write(workdir / "samples.csv", _rows_csv(all_rows))
    if per_setting:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(per_setting[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(per_setting)
        atomic_write(workdir / "summary.csv", buf.getvalue())
    summary = {"ckpt": str(c.ckpt), "families": list(families), "config": json.loads(c.to_json()),
               "per_family": per_setting, "over_families": table}
    write_json(workdir / "summary.json", summary)
    _plot(all_rows, workdir / "scores.png")
    n_samples = sum(r["kind"] == "sample" for r in all_rows)
    n_invalid = sum(r["kind"] == "sample" and not r["valid"] for r in all_rows)
    print(f"{len(families)} families, {len(keys)} settings, {n_samples} samples ({n_invalid} with other tokens than "
          f"residues, not scored); wrote samples.csv, "
          f"summary.csv, summary.json, scores.png to {workdir}")
    for setting, t in table.items():
        print(setting + ": " + (", ".join(f"{k} {v['mean']:.3g}±{v['ci95']:.2g}" for k, v in t.items()
                                          if k.endswith(("_mean", "_ks"))) or "no scored sample"))
    return summary
