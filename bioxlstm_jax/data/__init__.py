"""Data: file readers, tokenizers, example builders, TFDS builders and grain pipelines."""

from bioxlstm_jax.data.pipeline import array_batches, lm_batches

__all__ = ["lm_batches", "array_batches"]
