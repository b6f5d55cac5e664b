"""Named model configurations of the Bio-xLSTM paper (Schmidinger et al., ICLR 2025).

``names()`` lists them; ``get(name, **changes)`` returns the ``XLSTMConfig`` (with optional changes,
e.g. ``get("prot_xlstm_26m", form="parallel")``). Parameter counts are pinned by the tests.

* ``prot_xlstm_26m`` / ``prot_xlstm_102m``: Prot-xLSTM (vocab 38, 16 mLSTM blocks, 4 heads, inner
  RoPE with base 500000, chunkwise, context 131072); 25.9M / 102.2M parameters. Chunk 256, where the
  reference uses 1024: the result does not depend on the chunk size, and 256 trains fastest with our
  XLA form (2 x 1024 tokens on CPU: 10.1 / 7.6 / 14.8 s per step at chunk 64 / 256 / 1024).
* ``chem_xlstm_15m``: Chem-xLSTM (vocab 37, d 512, 9 mLSTM blocks, 8 heads, context 100); 14.8M.
  Its mLSTM form is ``parallel`` (exact, and 1.3x faster than chunkwise to train at S = 100 on CPU,
  ``benchmarks/train_throughput.py``); state passing and decoding still use the recurrent forms.
* ``dna_xlstm_500k`` / ``dna_xlstm_2m``: DNA-xLSTM sLSTM models (d 128 x 5 blocks, FFN 1.25; d 256 x 6
  blocks, FFN 1.0; context 1024). ``dna_xlstm_4m``: d 256, 9 mLSTM blocks, proj 2.0 (rounded down,
  as DNA-xLSTM does), per-head RoPE, context 32768. All DNA presets: 12-token vocabulary with its
  complement map, causal (choose ``bidirectional`` / ``rcps`` per objective).
* ``prot_small``, ``dna_small``, ``chem_small``: the jobs' default models, sized for a few minutes of
  training on a CPU: a paper preset made narrow and shallow (d 128 x 2 blocks, chunk 64; d 64 x 2
  blocks, chunk 64; d 128 x 2 blocks, 4 heads).
"""

from __future__ import annotations

from bioxlstm_jax.data.dna import COMPLEMENT
from bioxlstm_jax.nn.config import XLSTMConfig

__all__ = ["names", "get"]

_PROT = dict(vocab_size=38, num_blocks=16, mlstm_num_heads=4, rope="inner", rope_base=500_000.0,
             context_length=131_072, chunk_size=256)
_DNA = dict(vocab_size=12, complement_map=COMPLEMENT, mlstm_round_up=False)
# DNA-xLSTM's sLSTM FFN widths are exact multiples of 8 (its pretraining script rounds to 8).
_DNA_SLSTM = dict(_DNA, slstm_num_heads=4, ffn_round_to=8, context_length=1024)

_PRESETS: dict[str, dict] = {
    "prot_xlstm_26m": dict(_PROT, embedding_dim=512),
    "prot_xlstm_102m": dict(_PROT, embedding_dim=1024),
    "chem_xlstm_15m": dict(vocab_size=37, embedding_dim=512, num_blocks=9, mlstm_num_heads=8, context_length=100,
                           form="parallel"),
    "dna_xlstm_500k": dict(_DNA_SLSTM, embedding_dim=128, num_blocks=5, slstm_at=tuple(range(5)), ffn_proj_factor=1.25),
    "dna_xlstm_2m": dict(_DNA_SLSTM, embedding_dim=256, num_blocks=6, slstm_at=tuple(range(6)), ffn_proj_factor=1.0),
    "dna_xlstm_4m": dict(_DNA, embedding_dim=256, num_blocks=9, mlstm_proj_factor=2.0, rope="head",
                         context_length=32_768, chunk_size=256),
}
_PRESETS.update({
    "prot_small": dict(_PRESETS["prot_xlstm_26m"], embedding_dim=128, num_blocks=2, chunk_size=64, context_length=2048),
    "dna_small": dict(_PRESETS["dna_xlstm_4m"], embedding_dim=64, num_blocks=2, chunk_size=64, context_length=1024),
    "chem_small": dict(_PRESETS["chem_xlstm_15m"], embedding_dim=128, num_blocks=2, mlstm_num_heads=4),
})


def names() -> tuple[str, ...]:
    """The preset names."""
    return tuple(_PRESETS)


def get(name: str, **changes) -> XLSTMConfig:
    """The ``XLSTMConfig`` of a preset, with ``changes`` applied (any ``XLSTMConfig`` field)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {names()}")
    return XLSTMConfig(**{**_PRESETS[name], **changes})
