"""SMILES generation with a Chem-xLSTM language model (recurrent decoding from ``[BEG]``)."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from bioxlstm_jax.data.smiles import SmilesVocab
from bioxlstm_jax.inference.generate import generate, log_probs
from bioxlstm_jax.io import fixed_batches, pad_rows

__all__ = ["load_vocab", "generate_smiles", "smiles_log_likelihood"]


def load_vocab(path: str | os.PathLike) -> SmilesVocab:
    """The SMILES vocabulary of a training workdir or converted checkpoint (``vocab.json``), or of a
    Chem-xLSTM run directory (``init_arguments.json``)."""
    path = Path(path)
    for name in ("vocab.json", "init_arguments.json"):
        if (path / name).is_file():
            return SmilesVocab.load(path / name)
    raise FileNotFoundError(f"{path}: no vocab.json (a chem_pretrain workdir or converted Chem-xLSTM checkpoint "
                            "holds one)")


def generate_smiles(model, params, vocab: SmilesVocab, n: int, rng: jax.Array, *, context: str = "",
                    max_new_tokens: int | None = None, batch_size: int = 256, temperature: float = 1.0,
                    top_k: int = 0, top_p: float = 1.0, progress: bool = True) -> dict:
    """Samples ``n`` SMILES, each from ``[BEG]`` (+ the tokens of ``context``, for in-context
    generation), batched, one recurrent step per token; a row stops at ``[END]``.

    Returns ``smiles`` (list of n str: the generated text after the prompt, up to ``[END]``; None if a
    token outside the vocabulary was drawn), ``finished`` (n,) bool (``[END]`` was drawn within
    ``max_new_tokens``, default: the model's context length minus the prompt), and
    ``log_likelihood`` (n,) (sum of log p at temperature 1 over the new tokens, ``[END]`` included).
    """
    prompt = vocab.encode(context, add_special=False) if context else []
    prompt = np.asarray([vocab.beg_id, *prompt], np.int32)
    if max_new_tokens is None:
        max_new_tokens = max(1, model.config.context_length - len(prompt))
    smiles, finished, loglik = [], [], []
    bar = tqdm(total=n, desc="generating", unit="mol", disable=not progress)
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        rng, key = jax.random.split(rng)
        # Keep one compiled shape: pad the last batch to batch_size rows.
        out = generate(model, params, np.broadcast_to(prompt, (batch_size, len(prompt))),
                       max_new_tokens=max_new_tokens, rng=key, temperature=temperature, top_k=top_k, top_p=top_p,
                       stop_token=vocab.end_id)
        for row, length in zip(out["tokens"][:rows], out["lengths"][:rows]):
            ids = row[:length]
            done = length > 0 and ids[-1] == vocab.end_id
            smiles.append(None if np.any(ids >= len(vocab)) else vocab.decode(ids))
            finished.append(bool(done))
        loglik.extend(out["log_likelihood"][:rows].tolist())
        bar.update(rows)
    bar.close()
    return {"smiles": smiles, "finished": np.asarray(finished), "log_likelihood": np.asarray(loglik)}


def smiles_log_likelihood(model, params, vocab: SmilesVocab, candidates: list[str], *, context: str = "",
                          batch_size: int = 64) -> np.ndarray:
    """Mean log-probability per token of each candidate SMILES (its tokens and ``[END]``), after
    ``[BEG]`` + ``context`` (in-context scoring: e.g. ``context = "<k molecules joined by '.'>."``).
    One parallel forward pass per batch of right-padded rows. Returns (len(candidates),) float."""
    import jax.numpy as jnp

    prefix = [vocab.beg_id, *(vocab.encode(context, add_special=False) if context else [])]
    rows = [prefix + vocab.encode(c, add_special=False) + [vocab.end_id] for c in candidates]
    width = max(len(r) for r in rows)
    scores = []
    for batch in fixed_batches(len(rows), batch_size):
        chunk = rows[batch]
        tokens = np.full((len(chunk), width), vocab.pad_id, np.int32)
        for b, r in enumerate(chunk):
            tokens[b, :len(r)] = r
        logp = np.asarray(log_probs(model, params, jnp.asarray(pad_rows(tokens, batch_size))))  # (B, W, V)
        for b, r in enumerate(chunk):
            targets = np.arange(len(prefix), len(r))
            scores.append(float(np.mean(logp[b, targets - 1, np.asarray(r)[targets]])))
    return np.asarray(scores)
