"""tensorflow-datasets builders over local files, stored as ``array_record`` (no TensorFlow needed).

``sequence_records(files, data_dir)`` prepares (once) and opens random-access sources of
``{"id": str, "sequence": str}`` records, one per split, ready for ``lm_batches``. The prepared
dataset is keyed by the files' paths, sizes and modification times, so editing a file re-prepares.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import tensorflow_datasets as tfds

from bioxlstm_jax.data.formats import read_fasta, read_lines

__all__ = ["SequenceFiles", "sequence_records"]

READERS = {"fasta": read_fasta, "lines": read_lines}


class SequenceFiles(tfds.core.GeneratorBasedBuilder):
    """Records ``{"id", "sequence"}`` read from local FASTA or one-record-per-line files."""

    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, files: dict[str, list[str]], reader: str = "fasta", **kwargs):
        if reader not in READERS:
            raise ValueError(f"reader must be one of {sorted(READERS)}, got {reader!r}")
        self._files = {split: [str(Path(p).absolute()) for p in paths] for split, paths in files.items()}
        self._reader = reader
        for paths in self._files.values():
            for p in paths:
                if not Path(p).is_file():
                    raise FileNotFoundError(f"{p}: no such file")
        key = hashlib.sha1(repr((reader, sorted(
            (s, p, os.path.getsize(p), os.path.getmtime(p)) for s, ps in self._files.items() for p in ps))).encode())
        kwargs.setdefault("config", tfds.core.BuilderConfig(name=f"{reader}_{key.hexdigest()[:16]}"))
        super().__init__(file_format="array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({"id": tfds.features.Text(), "sequence": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(paths) for split, paths in self._files.items()}

    def _generate_examples(self, paths):
        read = READERS[self._reader]
        for p in paths:
            for n, (name, seq) in enumerate(read(p)):
                yield f"{p}#{n}", {"id": name, "sequence": seq}


def sequence_records(files: dict[str, list[str]], data_dir: str | os.PathLike, reader: str = "fasta"):
    """``{split: random-access source}`` of ``{"id": bytes, "sequence": bytes}`` records."""
    builder = SequenceFiles(files=files, reader=reader, data_dir=str(data_dir))
    builder.download_and_prepare()
    return {split: builder.as_data_source(split) for split in files}
