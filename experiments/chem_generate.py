"""Sample molecules from a Chem-xLSTM model and score them.

    python -m experiments.chem_generate --ckpt runs/chem_pretrain [--n 1000] [--out runs/chem_pretrain/generated.json]

Batched recurrent sampling from ``[BEG]`` (temperature, top-k, top-p; a molecule ends at ``[END]``),
then: validity, uniqueness, novelty against the training set (and against the test set, which is
what Chem-xLSTM reports as novelty), unique Bemis-Murcko scaffolds, internal diversity, FCD against
``--reference`` (the ``fcd`` package's ChemNet), MW / logP / QED histograms against the reference
(``<out>_properties.png``) and a grid of sampled molecules (``<out>_grid.png``). Invalid SMILES are
counted, never fatal. Prints the metrics; writes them and the SMILES to ``--out`` (JSON, atomically).
Needs the chem extra (``pip install -e ".[chem]"``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("ckpt", None, "chem_pretrain workdir or converted Chem-xLSTM checkpoint", required=True)
flags.DEFINE_integer("n", 1000, "molecules to sample")
flags.DEFINE_string("out", None, "metrics + SMILES JSON (default: <ckpt>/generated.json)")
flags.DEFINE_string("reference", "", "SMILES file for FCD and the property plots (default: the run's test file)")
flags.DEFINE_string("train", "", "training SMILES for novelty (default: the run's training file)")
flags.DEFINE_string("test", "", "test SMILES for novelty_vs_test (default: the run's test file)")
flags.DEFINE_integer("reference_size", 5000, "molecules of --reference used (FCD, plots); 0 = all")
flags.DEFINE_float("temperature", 1.0, "sampling temperature")
flags.DEFINE_integer("top_k", 0, "keep the k most likely tokens (0: all)")
flags.DEFINE_float("top_p", 1.0, "nucleus sampling mass")
flags.DEFINE_integer("batch_size", 250, "molecules decoded together")
flags.DEFINE_integer("seed", 0, "sampling seed")


def run_files(ckpt: Path) -> dict[str, str]:
    """The train / test SMILES files a chem_pretrain run used (its config.json), else the shipped ones."""
    from experiments.chem_pretrain import data_files, get_config

    c = get_config()
    if (ckpt / "config.json").is_file():
        saved = json.loads((ckpt / "config.json").read_text())
        for split in ("train", "valid", "test"):
            if isinstance(saved.get(split), str):
                c[split] = saved[split]
    return data_files(c)


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def main(argv):
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.n < 2:
        raise app.UsageError("--n must be at least 2")
    import jax
    import numpy as np

    from bioxlstm_jax.data.smiles import read_smiles
    from bioxlstm_jax.evaluation import chem
    from bioxlstm_jax.inference import generate_smiles, load_lm, load_vocab

    ckpt = Path(FLAGS.ckpt)
    model, params = load_lm(ckpt)
    vocab = load_vocab(ckpt)
    files = run_files(ckpt)
    read = lambda p: [s for _, s in read_smiles(p)]  # noqa: E731
    reference = read(FLAGS.reference or files["test"])
    if FLAGS.reference_size:
        reference = reference[:FLAGS.reference_size]

    out = generate_smiles(model, params, vocab, FLAGS.n, jax.random.key(FLAGS.seed), batch_size=FLAGS.batch_size,
                          temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p)
    smiles = out["smiles"]
    metrics = chem.smiles_metrics(smiles, train=read(FLAGS.train or files["train"]),
                                  test=read(FLAGS.test or files["test"]))
    metrics["finished"] = float(np.mean(out["finished"]))
    valid = [s for s, c in zip(smiles, chem.canonical(smiles)) if c is not None]
    metrics["fcd"] = chem.fcd(valid, reference) if len(valid) >= 2 else float("nan")
    out_path = Path(FLAGS.out) if FLAGS.out else ckpt / "generated.json"
    stem = out_path.with_suffix("")
    gen_props, ref_props = chem.properties(valid), chem.properties(reference)
    for name in chem.PROPERTIES:
        metrics[f"{name}_mean"] = float(np.mean(gen_props[name])) if len(valid) else float("nan")
        metrics[f"reference_{name}_mean"] = float(np.mean(ref_props[name]))
    if len(valid):
        chem.plot_properties(gen_props, ref_props, f"{stem}_properties.png")
        chem.grid_image(valid, f"{stem}_grid.png")
    settings = {k: getattr(FLAGS, k) for k in ("ckpt", "n", "temperature", "top_k", "top_p", "seed")}
    write_json(out_path, {"settings": settings, "reference": FLAGS.reference or files["test"], "metrics": metrics,
                          "smiles": smiles, "log_likelihood": out["log_likelihood"].tolist()})
    width = max(len(k) for k in metrics)
    for k, v in metrics.items():
        print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    print(f"wrote {out_path}" + (f", {stem}_properties.png, {stem}_grid.png" if len(valid) else ""))


if __name__ == "__main__":
    sys.exit(app.run(main))
