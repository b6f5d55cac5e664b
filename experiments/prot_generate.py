"""Homolog-conditioned protein generation with a Prot-xLSTM.

    python -m experiments.prot_generate --ckpt runs/prot_pretrain --msa family.a3m [--out samples.fasta] \
      [--n_context 20] [--num_samples 16] [--temperature 1.0 --top_k 10 --top_p 1.0] \
      [--target_seq MKT... --spans 31-40,80-85]   # inpaint residues 31-40 and 80-85 (1-based, inclusive)

``--ckpt``: a training workdir (its best, else latest, params) or a converted official checkpoint.
The context is ``--n_context`` proteins drawn at random (``--context_seed``) from ``--msa`` (a3m, a2m,
FASTA or Stockholm), gap-free; the prompt is prefilled once in segments, then each protein is decoded
token by token from the recurrent state until ``<cls>``. The FASTA header of each sample gives its
log-likelihood, perplexity, token count and whether it completed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("ckpt", None, "training workdir or converted checkpoint", required=True)
flags.DEFINE_string("msa", None, "homologs for the context (a3m / a2m / FASTA / Stockholm, .gz ok)", required=True)
flags.DEFINE_string("out", "", "output FASTA (default: <ckpt>/generated.fasta)")
flags.DEFINE_integer("n_context", 20, "context proteins (-1: all)")
flags.DEFINE_integer("context_seed", 0, "seed of the context draw")
flags.DEFINE_integer("num_samples", 16, "proteins to generate")
flags.DEFINE_integer("batch_size", 16, "proteins decoded together")
flags.DEFINE_float("temperature", 1.0, "sampling temperature")
flags.DEFINE_integer("top_k", 10, "keep the k most likely tokens (0: all, 1: greedy)")
flags.DEFINE_float("top_p", 1.0, "nucleus sampling mass")
flags.DEFINE_integer("max_new_tokens", 1000, "longest protein (tokens)")
flags.DEFINE_integer("seed", 0, "sampling seed")
flags.DEFINE_string("target_seq", "", "inpainting: the protein whose --spans are regenerated")
flags.DEFINE_string("spans", "", "inpainting: 1-based inclusive residue ranges, e.g. 31-40,80-85")
flags.DEFINE_integer("segment_length", 4096, "prefill segment (tokens per forward pass)")


def parse_spans(text: str) -> list[tuple[int, int]]:
    """'31-40,80-85' (1-based, inclusive) -> [(30, 40), (79, 85)] (0-based, end-exclusive)."""
    spans = []
    for part in text.split(","):
        try:
            a, b = (int(x) for x in part.split("-"))
        except ValueError:
            raise app.UsageError(f"--spans: {part!r} is not '<first>-<last>'") from None
        spans.append((a - 1, b))
    return sorted(spans)


def write_fasta(path: str, records: list[tuple[str, str]]) -> None:
    """Writes atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp")
    with os.fdopen(fd, "w") as f:
        for header, seq in records:
            f.write(f">{header}\n{seq}\n")
    os.replace(tmp, path)


def main(argv):
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every file operation at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jax
    import numpy as np
    from tqdm.auto import tqdm

    from bioxlstm_jax.data.formats import read_msa
    from bioxlstm_jax.data.protein import clean_sequence
    from bioxlstm_jax.inference import load_lm
    from bioxlstm_jax.inference.protein import context_prompt, generate_proteins, inpainting_prompt

    if bool(FLAGS.target_seq) != bool(FLAGS.spans):
        raise app.UsageError("inpainting needs both --target_seq and --spans")
    proteins = [p for p in (clean_sequence(r) for _, r in read_msa(FLAGS.msa)) if p]
    n = len(proteins) if FLAGS.n_context < 0 else min(FLAGS.n_context, len(proteins))
    order = np.random.default_rng(FLAGS.context_seed).permutation(len(proteins))[:n]
    context = [proteins[i] for i in order]
    model, params = load_lm(FLAGS.ckpt)
    token_positions = None
    if FLAGS.target_seq:
        prompt, positions, token_positions = inpainting_prompt(context, FLAGS.target_seq.upper(),
                                                               parse_spans(FLAGS.spans))
    else:
        prompt, positions = context_prompt(context)
    with tqdm(total=FLAGS.num_samples, desc="generate", unit="protein") as bar:
        samples = generate_proteins(model, params, prompt, positions, num_samples=FLAGS.num_samples,
                                    rng=jax.random.PRNGKey(FLAGS.seed), max_new_tokens=FLAGS.max_new_tokens,
                                    temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p,
                                    token_positions=token_positions, batch_size=FLAGS.batch_size,
                                    segment_length=FLAGS.segment_length, progress=bar.update)
    records = [(f"sample_{i} log_likelihood={s['log_likelihood']:.4f} perplexity={s['perplexity']:.4f} "
                f"n_tokens={s['n_tokens']} complete={s['complete']} valid={s['valid']}", s["sequence"])
               for i, s in enumerate(samples)]
    out = Path(FLAGS.out or Path(FLAGS.ckpt) / "generated.fasta")
    write_fasta(out, records)
    done = sum(s["complete"] for s in samples)
    print(f"wrote {len(samples)} proteins to {out} ({done} complete; context {n} proteins, "
          f"{len(prompt)} tokens); mean perplexity {np.mean([s['perplexity'] for s in samples]):.3f}")


if __name__ == "__main__":
    sys.exit(app.run(main))
