"""Metrics of generated SMILES (RDKit; FCD from the ``fcd`` package, which ships ChemNet's weights).

Needs the ``chem`` extra: ``pip install "bioxlstm-jax[chem]"`` (rdkit, fcd; fcd needs PyTorch; install
the CPU wheel first). Invalid SMILES are counted, never raised.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from bioxlstm_jax.io import atomic_path

__all__ = ["canonical", "smiles_metrics", "fcd", "properties", "plot_properties", "grid_image"]

PROPERTIES = ("MW", "logP", "QED")


def _rdkit():
    try:
        from rdkit import Chem, RDLogger
    except ImportError as e:  # pragma: no cover - the chem extra is part of the test extras
        raise ImportError('SMILES metrics need RDKit: pip install "bioxlstm-jax[chem]"') from e
    RDLogger.DisableLog("rdApp.*")
    return Chem


def canonical(smiles: Sequence[str | None]) -> list[str | None]:
    """RDKit canonical SMILES, None where a string is missing or does not parse."""
    Chem = _rdkit()
    out = []
    for s in smiles:
        mol = Chem.MolFromSmiles(s) if s else None
        out.append(Chem.MolToSmiles(mol) if mol is not None else None)
    return out


def _internal_diversity(mols, max_molecules: int, seed: int) -> float:
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    if len(mols) < 2:
        return float("nan")
    if len(mols) > max_molecules:
        mols = [mols[i] for i in np.random.default_rng(seed).choice(len(mols), max_molecules, replace=False)]
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fps = [gen.GetFingerprint(m) for m in mols]
    total, pairs = 0.0, 0
    for i in range(1, len(fps)):
        sims = DataStructs.BulkTanimotoSimilarity(fps[i], fps[:i])
        total += float(np.sum(sims))
        pairs += len(sims)
    return 1.0 - total / pairs


def smiles_metrics(generated: Sequence[str | None], train: Sequence[str] | None = None,
                   test: Sequence[str] | None = None, *, diversity_sample: int = 2000, seed: int = 0) -> dict:
    """Counts and fractions over the ``n = len(generated)`` samples.

    * ``validity``: parses with RDKit;
    * ``uniqueness``: distinct canonical valid molecules / valid (MOSES); ``unique_strings``: distinct
      generated strings / n, invalid ones included (Chem-xLSTM's ``unique``);
    * ``novelty``: distinct valid molecules absent from ``train`` / distinct valid;
      ``novelty_vs_test``: the same against ``test`` (what Chem-xLSTM reports as ``novel``);
    * ``scaffolds``: distinct Bemis-Murcko scaffolds among the valid molecules;
    * ``internal_diversity``: 1 - mean pairwise Tanimoto similarity (Morgan radius 2, 1024 bits) of
      up to ``diversity_sample`` distinct valid molecules.
    """
    from rdkit.Chem.Scaffolds import MurckoScaffold

    Chem = _rdkit()
    n = len(generated)
    canon = canonical(generated)
    valid = [c for c in canon if c is not None]
    distinct = sorted(set(valid))
    mols = [Chem.MolFromSmiles(s) for s in distinct]
    scaffolds = {MurckoScaffold.MurckoScaffoldSmiles(mol=m) for m in mols}
    out = {
        "n": n,
        "valid": len(valid),
        "validity": len(valid) / n if n else float("nan"),
        "unique": len(distinct),
        "uniqueness": len(distinct) / len(valid) if valid else float("nan"),
        "unique_strings": len({s for s in generated if s is not None}) / n if n else float("nan"),
        "scaffolds": len(scaffolds),
        "internal_diversity": _internal_diversity(mols, diversity_sample, seed),
    }
    for name, reference in (("novelty", train), ("novelty_vs_test", test)):
        if reference is not None:
            known = {c for c in canonical(reference) if c is not None}
            out[name] = sum(s not in known for s in distinct) / len(distinct) if distinct else float("nan")
    return out


@functools.lru_cache(maxsize=1)
def _chemnet():
    try:
        import fcd as fcd_package
    except ImportError as e:  # pragma: no cover
        raise ImportError('FCD needs the fcd package: pip install "bioxlstm-jax[chem]"') from e
    return fcd_package, fcd_package.load_ref_model()


def fcd(generated: Sequence[str], reference: Sequence[str]) -> float:
    """Fréchet ChemNet Distance between two sets of valid SMILES: ``fcd.get_fcd``'s computation, with
    ChemNet loaded once and its preprocessing in this process (``get_fcd`` forks a worker, which can
    deadlock a process running JAX)."""
    if len(generated) < 2 or len(reference) < 2:
        raise ValueError(f"FCD needs at least 2 molecules per set, got {len(generated)} and {len(reference)}")
    package, model = _chemnet()
    acts = [package.get_predictions(model, list(x), n_jobs=0, device="cpu") for x in (generated, reference)]
    (mu1, mu2), (s1, s2) = ([np.mean(a, axis=0) for a in acts]), ([np.cov(a.T) for a in acts])
    return float(package.calculate_frechet_distance(mu1=mu1, mu2=mu2, sigma1=s1, sigma2=s2))


def properties(smiles: Sequence[str]) -> dict[str, np.ndarray]:
    """Molecular weight, Crippen logP and QED of each valid SMILES (invalid ones are skipped)."""
    from rdkit.Chem import QED, Crippen, Descriptors

    Chem = _rdkit()
    mols = [m for m in (Chem.MolFromSmiles(s) for s in smiles if s) if m is not None]
    return {"MW": np.array([Descriptors.MolWt(m) for m in mols]),
            "logP": np.array([Crippen.MolLogP(m) for m in mols]),
            "QED": np.array([QED.qed(m) for m in mols])}


def plot_properties(generated: dict, reference: dict, path) -> None:
    """Histograms of ``properties`` of generated vs reference molecules, one panel per property."""
    from matplotlib.figure import Figure  # no pyplot: never touches the caller's backend

    fig = Figure(figsize=(4 * len(PROPERTIES), 3.2))
    axes = fig.subplots(1, len(PROPERTIES))
    for ax, name in zip(axes, PROPERTIES):
        both = np.concatenate([generated[name], reference[name]])
        bins = np.linspace(both.min(), both.max(), 40) if len(both) else 10
        ax.hist(reference[name], bins=bins, density=True, alpha=0.5, label=f"reference ({len(reference[name])})")
        ax.hist(generated[name], bins=bins, density=True, alpha=0.5, label=f"generated ({len(generated[name])})")
        ax.set_xlabel(name)
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)


def grid_image(smiles: Sequence[str], path, per_row: int = 6, max_molecules: int = 24) -> int:
    """A PNG grid of the first ``max_molecules`` valid molecules; returns how many were drawn."""
    from rdkit.Chem import Draw

    Chem = _rdkit()
    mols = [m for m in (Chem.MolFromSmiles(s) for s in smiles if s) if m is not None][:max_molecules]
    if mols:
        image = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(220, 180))
        with atomic_path(path) as tmp:
            if hasattr(image, "save"):  # a PIL image
                image.save(str(tmp))
            else:  # inside IPython, RDKit returns an IPython PNG image
                tmp.write_bytes(image.data)
    return len(mols)
