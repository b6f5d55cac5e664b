"""grain pipelines from a random-access source of examples to fixed-shape ``(B, L)`` batches.

Examples are dicts with a 1-D int ``tokens`` array (and optionally a same-length ``loss_mask``,
and ``positions``). Batches are dicts of numpy arrays:

* ``tokens`` (B, L) int32, padding = ``pad_id``;
* ``segment_ids`` (B, L) int32: 1, 2, ... per packed example, 0 on padding (the model's mLSTM
  ``resets`` and the loss's same-document rule come from it);
* ``positions`` (B, L) int32: position within the example (or the example's own ``positions``);
* ``loss_mask`` (B, L) float32 when the examples carry one.

The pipeline is deterministic given ``seed`` and checkpointable mid-epoch: ``iter(ds).get_state()``
/ ``set_state()`` (the trainer saves it with every checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np

__all__ = ["lm_batches", "array_batches"]


def _crop(example: dict, seq_len: int) -> dict:
    out = {}
    for k, v in example.items():
        v = np.asarray(v)
        if v.ndim != 1:
            raise ValueError(f"example field {k!r} must be 1-D, got shape {v.shape}")
        out[k] = v[:seq_len]
    if "positions" not in out:
        out["positions"] = np.arange(len(out["tokens"]), dtype=np.int32)
    out["tokens"] = out["tokens"].astype(np.int32)
    out["positions"] = out["positions"].astype(np.int32)
    if "loss_mask" in out:
        out["loss_mask"] = out["loss_mask"].astype(np.float32)
    return out


def _pad(example: dict, seq_len: int, pad_id: int) -> dict:
    n = len(example["tokens"])
    out = {}
    for k, v in example.items():
        fill = pad_id if k == "tokens" else 0
        out[k] = np.concatenate([v, np.full(seq_len - n, fill, v.dtype)])
    out["segment_ids"] = (np.arange(seq_len) < n).astype(np.int32)
    return out


def _rename_packed(batch: dict, pad_id: int) -> dict:
    out = {k: v for k, v in batch.items() if not k.endswith(("_segment_ids", "_positions"))}
    out["segment_ids"] = batch["tokens_segment_ids"].astype(np.int32)
    if pad_id:
        out["tokens"] = np.where(out["segment_ids"] > 0, out["tokens"], pad_id).astype(np.int32)
    return out


def _rows_of_global_batches(ds: grain.MapDataset, rows: int, shard_index: int, shard_count: int):
    """Example j of this process = row ``shard_index * rows + j % rows`` of global batch ``j // rows``."""
    global_rows = rows * shard_count
    n = len(ds) // global_rows * rows

    def pick(j):
        return ds[(j // rows) * global_rows + shard_index * rows + j % rows]

    return grain.MapDataset.range(n).map(pick)


def lm_batches(source: Sequence[Any], *, batch_size: int, seq_len: int, seed: int = 0,
               transform: Callable[[Any, np.random.Generator], dict] | None = None, shard_index: int = 0,
               shard_count: int = 1, shuffle: bool = True, num_epochs: int | None = None, pack: bool = True,
               pad_id: int = 0, prefetch: int = 2) -> grain.IterDataset:
    """Batches of ``batch_size`` rows of length ``seq_len`` from ``source`` (``len`` and ``[i]``).

    The global example order is ``source`` shuffled with ``seed`` (a new order per epoch) and
    repeated ``num_epochs`` times (None: forever); ``transform(record, rng)`` turns a record into an
    example with an ``rng`` seeded by its global position (augmentations replay exactly on resume).
    Longer examples are cropped to ``seq_len``.

    ``batch_size`` is this process's share; process ``shard_index`` of ``shard_count`` reads:
      * ``pack=False`` (one padded example per row): its block of rows of each global batch of
        ``batch_size * shard_count`` examples, so the global batches do not depend on the number of
        processes (two processes x 4 devices train exactly like one x 8);
      * ``pack=True`` (first-fit packing of several examples per row): every ``shard_count``-th
        example, packed locally; the rows then depend on the number of processes.
    """
    if len(source) < shard_count:
        raise ValueError(f"the source has {len(source)} records, fewer than the {shard_count} shards")
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs)
    if transform is not None:
        ds = ds.random_map(transform, seed=seed)
    ds = ds.map(lambda ex: _crop(ex, seq_len))
    if pack:
        keys = _crop(transform(source[0], np.random.default_rng(0)) if transform else source[0], seq_len)
        ds = grain.experimental.FirstFitPackIterDataset(
            ds[shard_index::shard_count].to_iter_dataset(), length_struct={k: seq_len for k in keys},
            num_packing_bins=batch_size, seed=seed)
        ds = ds.batch(batch_size, drop_remainder=True).map(lambda b: _rename_packed(b, pad_id))
    else:
        ds = _rows_of_global_batches(ds, batch_size, shard_index, shard_count).to_iter_dataset()
        ds = ds.map(lambda ex: _pad(ex, seq_len, pad_id)).batch(batch_size, drop_remainder=True)
    if prefetch:
        ds = grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=prefetch)
    return ds


def array_batches(arrays: dict[str, np.ndarray], *, batch_size: int, seed: int = 0,
                  transform: Callable[[dict, np.random.Generator], dict] | None = None, shard_index: int = 0,
                  shard_count: int = 1, shuffle: bool = True, num_epochs: int | None = None,
                  prefetch: int = 2) -> grain.IterDataset:
    """Batches of rows of equal-length arrays ``{name: (N, ...)}`` (e.g. padded tokens and labels).

    Order, ``transform(row, rng)`` and sharding as ``lm_batches(pack=False)``. For one unshuffled pass
    (``num_epochs=1``, ``shuffle=False``: evaluation) every row is served once: the last global batch
    is filled with copies of row 0 and every batch carries ``weight`` (1.0 real, 0.0 filler), which
    the losses use. Checkpointable like ``lm_batches``.
    """
    n = len(next(iter(arrays.values())))
    if any(len(a) != n for a in arrays.values()):
        raise ValueError(f"arrays must have the same length, got { {k: len(a) for k, a in arrays.items()} }")
    if n < shard_count:
        raise ValueError(f"{n} rows, fewer than the {shard_count} shards")
    weight = np.ones(n, np.float32)
    index = np.arange(n)
    if num_epochs == 1 and not shuffle:
        fill = -n % (batch_size * shard_count)
        index = np.concatenate([index, np.zeros(fill, index.dtype)])
        weight = np.concatenate([weight, np.zeros(fill, np.float32)])

    def row(j):
        return {**{k: a[index[j]] for k, a in arrays.items()}, "weight": weight[j]}

    ds = grain.MapDataset.range(len(index))
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs).map(row)
    if transform is not None:
        ds = ds.random_map(transform, seed=seed)
    ds = _rows_of_global_batches(ds, batch_size, shard_index, shard_count).to_iter_dataset()
    ds = ds.batch(batch_size, drop_remainder=True)
    if prefetch:
        ds = grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=prefetch)
    return ds
