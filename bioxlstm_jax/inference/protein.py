"""Homolog-conditioned protein generation with Prot-xLSTM: prompts, FIM inpainting, decoding.

Unconditional-in-family: the prompt is the context proteins followed by ``<cls>`` (position 0) and
the model writes the next protein until it emits ``<cls>``. Inpainting: the prompt ends with the
target in FIM layout ``<cls> kept0 <mask-1> kept1 ... <eos> <mask-1>``; the model writes span 1,
then ``<mask-2>`` and span 2, ..., then ``<cls>``; ``<mask-i>`` takes span i's start position and
the residue after it repeats it (the reference's ``get_fim_position_id``), and the spans are spliced
back into their slots (``reorder_fim``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from bioxlstm_jax.data.protein import CLS, EOS, MASK_IDS, VOCAB, apply_fim, encode, reorder_fim
from bioxlstm_jax.inference.generate import generate
from bioxlstm_jax.nn import XLSTMLM

__all__ = ["context_prompt", "inpainting_prompt", "generate_proteins"]


def context_prompt(context: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Context proteins -> (tokens, positions) ``<cls> p1 <cls> p2 ... <cls>`` (the last ``<cls>``
    starts the protein to generate)."""
    toks = [encode(p) for p in context] + [np.array([CLS], np.int32)]
    return np.concatenate(toks), np.concatenate([np.arange(len(t)) for t in toks]).astype(np.int32)


def inpainting_prompt(context: Sequence[str], target: str, spans: Sequence[tuple[int, int]]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prompt to regenerate ``spans`` of ``target``: 0-based, end-exclusive residue ranges
    ``[(start, end), ...]`` (sorted, disjoint, at most 5). Returns (tokens, positions, token_positions
    (V,): span start position of each ``<mask-i>``, -1 elsewhere)."""
    if not 1 <= len(spans) <= len(MASK_IDS):
        raise ValueError(f"give 1 to {len(MASK_IDS)} spans, got {len(spans)}")
    for s, e in spans:
        if not 0 <= s < e <= len(target):
            raise ValueError(f"span {s}-{e} is not inside the target (length {len(target)})")
    tok_spans = [(s + 1, e + 1) for s, e in spans]  # token indices: <cls> is 0
    fim_t, fim_p = apply_fim(encode(target), tok_spans)
    cut = int(np.flatnonzero(fim_t == EOS)[0]) + 2  # up to and including <eos> <mask-1>
    ctx_t, ctx_p = context_prompt(context)
    ctx_t, ctx_p = ctx_t[:-1], ctx_p[:-1]  # the target brings its own <cls>
    token_positions = np.full(len(VOCAB), -1, np.int32)
    for i, (s, _) in enumerate(tok_spans):
        token_positions[MASK_IDS[i]] = s
    return (np.concatenate([ctx_t, fim_t[:cut]]), np.concatenate([ctx_p, fim_p[:cut]]), token_positions)


def _protein_text(ids: Sequence[int]) -> tuple[str, bool]:
    """ids of one protein (no <cls>) -> (text, valid): residues as letters; other tokens spelled out."""
    text = "".join(VOCAB[int(i)] for i in ids)
    return text, all(4 <= int(i) <= 28 for i in ids)


def generate_proteins(model: XLSTMLM, params, prompt: np.ndarray, positions: np.ndarray, *, num_samples: int,
                      rng: jax.Array, max_new_tokens: int = 1000, temperature: float = 1.0, top_k: int = 10,
                      top_p: float = 1.0, token_positions: np.ndarray | None = None, batch_size: int = 16,
                      segment_length: int = 4096, context_devices: int = 1, progress: bool = True) -> list[dict]:
    """Samples ``num_samples`` proteins after ``prompt`` (from ``context_prompt`` or
    ``inpainting_prompt``) in batches. Returns per sample: ``sequence`` (natural order, spans
    spliced in), ``log_likelihood`` (sum of the model's log-probabilities of the generated tokens,
    the closing ``<cls>`` included), ``n_tokens``, ``perplexity`` = exp(-ll / n_tokens), ``complete``
    (it ended with ``<cls>`` within ``max_new_tokens``) and ``valid`` (only residue letters). ``progress``:
    a progress bar over the samples. ``segment_length``, ``context_devices``: the prompt's prefill (``nn.prefill``)."""
    prompt, positions = np.asarray(prompt, np.int32), np.asarray(positions, np.int32)
    tail_start = int(np.flatnonzero(prompt == CLS)[-1])
    tail = prompt[tail_start + 1:]  # the part of the protein being written that the prompt holds
    out = []
    bar = tqdm(total=num_samples, desc="generate", unit="protein", disable=not progress)
    for k, start in enumerate(range(0, num_samples, batch_size)):
        res = generate(model, params, np.broadcast_to(prompt, (batch_size, len(prompt))),
                       np.broadcast_to(positions, (batch_size, len(positions))), max_new_tokens=max_new_tokens,
                       rng=jax.random.fold_in(rng, k), temperature=temperature, top_k=top_k, top_p=top_p,
                       stop_token=CLS, token_positions=token_positions, segment_length=segment_length,
                       context_devices=context_devices)
        for b in range(min(batch_size, num_samples - start)):
            n = int(res["lengths"][b])
            new = res["tokens"][b, :n]
            complete = n > 0 and int(new[-1]) == CLS
            body = np.concatenate([tail, new[:-1] if complete else new])
            text, valid = _protein_text(reorder_fim(body))
            ll = float(res["log_likelihood"][b])
            out.append({"sequence": text, "log_likelihood": ll, "n_tokens": n,
                        "perplexity": float(np.exp(-ll / max(n, 1))), "complete": complete, "valid": valid})
        bar.update(min(batch_size, num_samples - start))
    bar.close()
    return out
