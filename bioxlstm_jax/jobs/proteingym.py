"""ProteinGym as one job (``experiments/proteingym.py``): every assay of the reference table whose DMS
and MSA files are present, scored with ``prot_fitness``'s protocol, resumable per assay, summarised
with the leaderboard's metrics and averaging, beside an independent-site baseline of the same MSAs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import ml_collections
import numpy as np

from bioxlstm_jax.data.protein import VOCAB
from bioxlstm_jax.io import atomic_path, atomic_write, write_json
from bioxlstm_jax.jobs.cli import load_model, require

__all__ = ["proteingym", "SCORERS", "SCORING_KEYS"]

SCORERS = ("model", "independent_site")  # the language model (with its retrieval mix) and the MSA profile
# the config keys that change the scores: a workdir's assays are reused only when these are the same
SCORING_KEYS = ("ckpt", "msa", "replicates", "max_context_tokens", "max_context_sequences", "retrieval_alpha")


def _find(folder: Path | None, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists."""
    if folder is None:
        return None
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _inputs(c: ml_collections.ConfigDict):
    """``(reference rows to score, {DMS_id: (dms path, msa path)}, [(DMS_id, what is missing)])``."""
    from bioxlstm_jax.assets import asset_path
    from bioxlstm_jax.evaluation import proteingym as pg

    if not (c.reference or c.dms_dir or c.msa_dir or c.msa):  # the shipped example: BLAT_ECOLX's four assays
        shipped = asset_path("protein", "BLAT_ECOLX")
        reference, dms_dir = shipped / "DMS_substitutions_BLAT_ECOLX.csv.gz", shipped
        msa_dir, msa = None, shipped / "BLAT_ECOLX_ColabFold_2202_poet.a3m.gz"
    else:
        require(c, "reference", "dms_dir")
        if not (c.msa_dir or c.msa):
            raise ValueError("missing --config.msa_dir (or --config.msa, one MSA for every assay)")
        reference, dms_dir = Path(c.reference), Path(c.dms_dir)
        msa_dir, msa = (Path(c.msa_dir) if c.msa_dir else None), (Path(c.msa) if c.msa else None)
    for flag, folder in (("dms_dir", dms_dir), ("msa_dir", msa_dir)):
        if folder is not None and not folder.is_dir():
            raise FileNotFoundError(f"--config.{flag}={folder}: no such folder")
    if msa is not None and not msa.is_file():
        raise FileNotFoundError(f"--config.msa={msa}: no such file")
    rows = pg.read_reference(reference)
    if c.dms_ids:
        wanted = [x.strip() for x in c.dms_ids.split(",") if x.strip()]
        unknown = [x for x in wanted if x not in {r["DMS_id"] for r in rows}]
        if unknown:
            raise ValueError(f"--config.dms_ids: {', '.join(unknown)} not in {reference}")
        rows = [r for r in rows if r["DMS_id"] in wanted]
    files, missing = {}, []
    for r in rows:
        dms, msa_file = _find(dms_dir, r["DMS_filename"]), msa or _find(msa_dir, r["MSA_filename"])
        if dms is None or msa_file is None:
            missing.append((r["DMS_id"], " and ".join(f"{name} in {folder}" for name, folder, path in (
                (r["DMS_filename"], dms_dir, dms), (r["MSA_filename"], msa_dir, msa_file)) if path is None)))
        else:
            files[r["DMS_id"]] = (dms, msa_file)
    if c.dms_ids and missing:
        raise FileNotFoundError(f"--config.dms_ids: no {missing[0][1]} for {missing[0][0]}")
    if not files:
        raise FileNotFoundError(f"{reference}: none of its {len(rows)} assays has its DMS and MSA files "
                                f"(e.g. {missing[0][0]}: no {missing[0][1]})")
    return [r for r in rows if r["DMS_id"] in files], files, missing


def _check_workdir(workdir: Path, settings: dict) -> None:
    """Refuses a workdir whose assays were scored with other ``SCORING_KEYS``."""
    path = workdir / "config.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    diff = [f"{k} is {old.get(k)!r} there, {settings[k]!r} here" for k in SCORING_KEYS if old.get(k) != settings[k]]
    if diff and any((workdir / "assays").glob("*.csv")):
        raise ValueError(f"{workdir} holds assays scored with other settings ({'; '.join(diff)}); use another "
                         "--workdir or the same settings")


def _write_assay(path: Path, rows: list[dict], scores: dict[str, np.ndarray]) -> None:
    text = io.StringIO()
    fields = [k for k in rows[0] if not k.startswith("_")] + [f"{s}_score" for s in SCORERS]
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for i, r in enumerate(rows):
        writer.writerow({**r, **{f"{s}_score": f"{scores[s][i]:.6f}" for s in SCORERS}})
    atomic_write(path, text.getvalue())


def _read_assay(path: Path) -> dict[str, np.ndarray]:
    from bioxlstm_jax.data.formats import open_text

    with open_text(path) as f:
        rows = list(csv.DictReader(f))
    out = {"DMS_score": np.array([float(r["DMS_score"]) for r in rows])}
    if rows and rows[0].get("DMS_score_bin") not in (None, "") and all(r["DMS_score_bin"] != "" for r in rows):
        out["DMS_score_bin"] = np.array([int(float(r["DMS_score_bin"])) for r in rows])
    for s in SCORERS:
        out[s] = np.array([float(r[f"{s}_score"]) for r in rows])
    return out


def _plot(path: Path, per_assay: list[dict]) -> None:
    """Per-assay Spearman of both scorers, bars grouped by selection type."""
    from matplotlib.figure import Figure  # no pyplot: never touches the caller's backend

    rows = sorted((r for r in per_assay if r["scorer"] == "model"), key=lambda r: (r["coarse_selection_type"],
                                                                                    r["DMS_id"]))
    base = {r["DMS_id"]: r["Spearman"] for r in per_assay if r["scorer"] == "independent_site"}
    fig = Figure(figsize=(max(6.5, 0.45 * len(rows) + 3.5), 4.4))
    ax = fig.subplots()
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["Spearman"] for r in rows], 0.4, label="model")
    ax.bar(x + 0.2, [base[r["DMS_id"]] for r in rows], 0.4, label="independent-site baseline", alpha=0.6)
    ax.set_xticks(x, [r["DMS_id"] for r in rows], rotation=60, ha="right", fontsize=7)
    start, group = 0, 0
    for i in range(1, len(rows) + 1):  # one label per selection type, every other one shaded
        if i == len(rows) or rows[i]["coarse_selection_type"] != rows[start]["coarse_selection_type"]:
            if group % 2 == 0:
                ax.axvspan(start - 0.5, i - 0.5, color="0.93", zorder=0)
            group += 1
            ax.text((start + i - 1) / 2, 1.0, rows[start]["coarse_selection_type"], ha="center", va="bottom",
                    fontsize=8, transform=ax.get_xaxis_transform())
            start = i
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_ylabel("Spearman rho")
    ax.set_title("ProteinGym: Spearman per assay", fontsize=9, pad=16)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)


def proteingym(c: ml_collections.ConfigDict, workdir: str) -> dict:
    """Scores the selected assays (``workdir/assays/<DMS_id>.csv``: the DMS rows plus ``model_score`` and
    ``independent_site_score``, each written when its assay is done, so a re-run resumes), then writes
    ``per_assay.csv`` (the five metrics per assay and scorer), ``summary.csv`` / ``summary.json`` (the
    leaderboard averages per scorer and metric) and ``spearman.png``. Assays of one protein and MSA
    share their single-site effects (one set of prefills). Returns the summary."""
    from tqdm.auto import tqdm

    from bioxlstm_jax.evaluation import proteingym as pg
    from bioxlstm_jax.jobs.fitness import check_protein, check_scoring

    require(c, "ckpt")
    check_scoring(c)
    rows, files, missing = _inputs(c)
    workdir = Path(workdir)
    settings = {k: (str(c[k]) if k in ("ckpt", "msa") and c[k] else c[k]) for k in SCORING_KEYS}
    _check_workdir(workdir, settings)
    for dms_id, what in missing:
        print(f"skipped {dms_id}: no {what}")

    # read and check every pending assay before anything is written
    pending = {}
    for r in rows:
        if (workdir / "assays" / f"{r['DMS_id']}.csv").is_file():
            continue
        dms_path, msa_path = files[r["DMS_id"]]
        start, end = int(r["MSA_start"]), int(r["MSA_end"])
        wt = check_protein(r["target_seq"][start - 1:end], f"{r['_where']}: target_seq of {r['DMS_id']}")
        dms = pg.read_dms(dms_path)
        mutations = [pg.parse_mutant(d["mutant"], start, wt, where=f"{dms_path}:{d['_line']}: ") for d in dms]
        pending[r["DMS_id"]] = (dms, mutations, wt, start, msa_path)
    config_json = {**json.loads(c.to_json()), **settings}  # written with the first output
    done = len(rows) - len(pending)
    if done:
        print(f"resuming: {done} of {len(rows)} assays already scored in {workdir / 'assays'}")

    groups: dict[tuple, list[str]] = {}  # assays sharing protein, offset and MSA share their effects
    for dms_id, (_, _, wt, start, msa_path) in pending.items():
        groups.setdefault((wt, start, str(msa_path)), []).append(dms_id)
    model, params = load_model(c, vocab_size=len(VOCAB), domain="protein", causal=True) if groups else (None, None)
    bar = tqdm(total=len(rows), initial=done, desc="assays", unit="assay", disable=not c.progress)
    for (wt, offset, msa_path), ids in groups.items():
        msa, start, weights = pg.prepare_msa(msa_path, wt, offset)
        positions = sorted({m.pos for i in ids for muts in pending[i][1] for m in muts})
        bar.set_postfix_str(f"{ids[0]}: {len(positions)} positions x {c.replicates} replicates")
        effect = pg.fitness_effects(model, params, msa, wt, positions, start=start, weights=weights,
                                    replicates=c.replicates, max_tokens=c.max_context_tokens,
                                    max_sequences=c.max_context_sequences, batch_size=c.batch_size,
                                    segment_length=c.segment_length, context_devices=c.context_devices,
                                    progress=c.progress)
        baseline = pg.independent_site_scores(msa, wt, start=start, weights=weights)
        if c.retrieval_alpha:
            effect = (1 - c.retrieval_alpha) * effect + c.retrieval_alpha * baseline
        write_json(workdir / "config.json", config_json)
        for dms_id in ids:
            dms, mutations = pending[dms_id][:2]
            scores = {"model": pg.score_mutants(effect, mutations), "independent_site": pg.score_mutants(baseline,
                                                                                                          mutations)}
            _write_assay(workdir / "assays" / f"{dms_id}.csv", dms, scores)
            bar.update(1)
    bar.close()

    write_json(workdir / "config.json", config_json)
    per_assay = []
    for r in rows:
        scored = _read_assay(workdir / "assays" / f"{r['DMS_id']}.csv")
        for s in SCORERS:
            per_assay.append({"DMS_id": r["DMS_id"], "scorer": s, "UniProt_ID": r["UniProt_ID"],
                              "coarse_selection_type": r["coarse_selection_type"],
                              "MSA_Neff_L_category": r["MSA_Neff_L_category"], "number_mutants": len(scored[s]),
                              **pg.assay_metrics(scored["DMS_score"], scored[s], scored.get("DMS_score_bin"))})
    summary = {s: {m: pg.leaderboard_summary([a for a in per_assay if a["scorer"] == s], m)
                   for m in pg.LEADERBOARD_METRICS} for s in SCORERS}
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(per_assay[0]))
    writer.writeheader()
    writer.writerows(per_assay)
    atomic_write(workdir / "per_assay.csv", text.getvalue())
    columns = list(summary["model"]["Spearman"])
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["scorer", "metric", *columns])
    for s in SCORERS:
        for m in pg.LEADERBOARD_METRICS:
            writer.writerow([s, m, *(f"{summary[s][m][k]:.4f}" for k in columns)])
    atomic_write(workdir / "summary.csv", text.getvalue())
    report = {"assays": [r["DMS_id"] for r in rows], "skipped": dict(missing), "summary": summary}
    write_json(workdir / "summary.json", report)
    _plot(workdir / "spearman.png", per_assay)
    print(f"{len(rows)} assays ({len(missing)} skipped for missing files); leaderboard averages:")
    print(f"{'scorer':<18}" + "".join(f"{m:>12}" for m in pg.LEADERBOARD_METRICS))
    for s in SCORERS:
        print(f"{s:<18}" + "".join(f"{summary[s][m]['Average']:>12.4f}" for m in pg.LEADERBOARD_METRICS))
    print(f"wrote {workdir / 'summary.csv'}, per_assay.csv, summary.json, spearman.png and assays/")
    return report
