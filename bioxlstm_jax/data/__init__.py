"""Data: file readers, tokenizers, example builders, TFDS builders and grain pipelines.

``lm_batches`` and ``array_batches`` (``data.pipeline``) are imported on first use, so the
vocabularies and readers (``data.dna``, ``data.protein``, ``data.smiles``, ``data.formats``) load
without grain.
"""

__all__ = ["lm_batches", "array_batches"]


def __getattr__(name):
    if name in __all__:
        from bioxlstm_jax.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'bioxlstm_jax.data' has no attribute {name!r}")
