"""tensorflow-datasets builders over local files, stored as ``array_record`` (no TensorFlow needed).

``sequence_records(files, data_dir)`` prepares (once) and opens random-access sources of
``{"id": str, "sequence": str}`` records, one per split, ready for ``lm_batches``;
``homolog_clusters(root, splits, data_dir)`` does the same for homolog clusters (one record per MSA
file: ``{"id", "proteins"}``, the unaligned proteins joined by newlines); ``genome_blocks(fasta, data_dir)``
stores a genome as fixed-size blocks for random access to windows (``bioxlstm_jax.data.dna``). A
prepared dataset is keyed by its files' paths, sizes and modification times, so editing a file
re-prepares.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from bioxlstm_jax.data.formats import open_text, read_fasta, read_genome_records, read_lines, read_msa
from bioxlstm_jax.data.protein import clean_sequence
from bioxlstm_jax.data.smiles import read_smiles
from bioxlstm_jax.io import dataset_dir

__all__ = ["SequenceFiles", "sequence_records", "HomologClusters", "homolog_clusters", "find_clusters",
           "GenomeBlocks", "genome_blocks", "GENOME_BLOCK"]


def _files_key(paths) -> str:
    return hashlib.sha1(repr(sorted((p, os.path.getsize(p), os.path.getmtime(p)) for p in paths)).encode()).hexdigest()

READERS = {"fasta": read_fasta, "lines": read_lines, "smiles": read_smiles}


class SequenceFiles(tfds.core.GeneratorBasedBuilder):
    """Records ``{"id", "sequence"}`` read from local FASTA, one-record-per-line or SMILES files."""

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


def sequence_records(files: dict[str, list[str]], data_dir: str | os.PathLike | None = None, reader: str = "fasta"):
    """``{split: random-access source}`` of ``{"id": bytes, "sequence": bytes}`` records, prepared under
    ``dataset_dir(data_dir)``."""
    builder = SequenceFiles(files=files, reader=reader, data_dir=dataset_dir(data_dir))
    builder.download_and_prepare()
    return {split: builder.as_data_source(split) for split in files}


OPENPROTEINSET_MSA = os.path.join("a3m", "uniclust30.a3m")


def find_clusters(root: str | os.PathLike) -> dict[str, str]:
    """``{cluster_id: msa path}`` of an OpenProteinSet tree (``<root>/<id>/a3m/uniclust30.a3m``) or of
    a flat folder of MSA files (``<root>/<id>.a3m[.gz]``, ``.a2m``, ``.fasta``, ``.sto``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory (expected an OpenProteinSet tree or a folder of MSAs)")
    found = {}
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and (entry / OPENPROTEINSET_MSA).is_file():
            found[entry.name] = str((entry / OPENPROTEINSET_MSA).absolute())
        elif entry.is_file():
            name = entry.name[:-3] if entry.name.endswith(".gz") else entry.name
            stem, ext = os.path.splitext(name)
            if ext.lower() in (".a3m", ".a2m", ".fasta", ".fa", ".sto"):
                found[stem] = str(entry.absolute())
    if not found:
        raise ValueError(f"{root}: found no homolog clusters (expected <id>/{OPENPROTEINSET_MSA} directories or "
                         "<id>.a3m / .a2m / .fasta / .sto files)")
    return found


def _split_ids(spec, where: str) -> list[str]:
    if isinstance(spec, (list, tuple)):
        return [str(x) for x in spec]
    ids = []
    with open_text(spec) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                ids.append(line.split()[0])
    if not ids:
        raise ValueError(f"{spec}: the {where} split file lists no cluster ids")
    return ids


class HomologClusters(tfds.core.GeneratorBasedBuilder):
    """Records ``{"id", "proteins"}``: one homolog cluster per MSA file, its unaligned proteins
    (``protein.clean_sequence``) joined by newlines, in file order (query first)."""

    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, clusters: dict[str, list[tuple[str, str]]], **kwargs):
        self._clusters = clusters
        key = _files_key({p for pairs in clusters.values() for _, p in pairs})
        splits_key = hashlib.sha1(repr({s: [c for c, _ in pairs] for s, pairs in clusters.items()}).encode())
        kwargs.setdefault("config", tfds.core.BuilderConfig(name=f"msa_{key[:10]}_{splits_key.hexdigest()[:6]}"))
        super().__init__(file_format="array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({"id": tfds.features.Text(), "proteins": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(pairs) for split, pairs in self._clusters.items()}

    def _generate_examples(self, pairs):
        for cluster_id, path in pairs:
            proteins = [clean_sequence(row) for _, row in read_msa(path)]
            yield cluster_id, {"id": cluster_id, "proteins": "\n".join(p for p in proteins if p)}


def homolog_clusters(root: str | os.PathLike, splits: dict, data_dir: str | os.PathLike | None = None) -> dict:
    """``{split: random-access source}`` of homolog-cluster records ``{"id": bytes, "proteins": bytes}``.

    ``splits`` maps a split name to a split file (one cluster id per line, as Prot-xLSTM's
    ``cluster_*_set.txt``), a list of ids, or ``None`` (every cluster of ``root`` not named by another
    split). An id missing from ``root`` is an error naming the split; nothing is prepared.
    """
    available = find_clusters(root)
    named = {s: _split_ids(v, s) for s, v in splits.items() if v is not None}
    taken = {c for ids in named.values() for c in ids}
    clusters = {}
    for split, spec in splits.items():
        ids = named[split] if spec is not None else [c for c in available if c not in taken]
        missing = [c for c in ids if c not in available]
        if missing:
            raise ValueError(f"split {split!r} ({spec if not isinstance(spec, (list, tuple)) else 'list'}): "
                             f"{len(missing)} of {len(ids)} clusters are not in {root}, e.g. {missing[:3]}")
        if not ids:
            raise ValueError(f"split {split!r} has no clusters in {root}")
        clusters[split] = [(c, available[c]) for c in ids]
    builder = HomologClusters(clusters=clusters, data_dir=dataset_dir(data_dir))
    builder.download_and_prepare()
    return {split: builder.as_data_source(split) for split in clusters}


GENOME_BLOCK = 2**16  # bases per stored genome block


class GenomeBlocks(tfds.core.GeneratorBasedBuilder):
    """A genome FASTA as records ``{"chrom", "chrom_length", "offset", "sequence"}`` of
    ``GENOME_BLOCK`` bases (the last block of a chromosome is shorter), in file order; soft-masked
    lower case and N runs are kept. One split, ``"genome"``."""

    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, fasta: str, **kwargs):
        self._fasta = str(Path(fasta).absolute())
        if not Path(self._fasta).is_file():
            raise FileNotFoundError(f"{self._fasta}: no such file")
        kwargs.setdefault("config", tfds.core.BuilderConfig(name=f"genome_{_files_key([self._fasta])[:16]}"))
        super().__init__(file_format="array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "chrom": tfds.features.Text(), "chrom_length": tfds.features.Scalar(dtype=np.int64),
                "offset": tfds.features.Scalar(dtype=np.int64), "sequence": tfds.features.Text()}),
            disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {"genome": self._generate_examples()}

    def _generate_examples(self):
        n = 0
        for chrom, seq in read_genome_records(self._fasta):
            for offset in range(0, len(seq), GENOME_BLOCK):
                yield n, {"chrom": chrom, "chrom_length": len(seq), "offset": offset,
                          "sequence": seq[offset:offset + GENOME_BLOCK]}
                n += 1


def genome_blocks(fasta: str | os.PathLike, data_dir: str | os.PathLike | None = None):
    """Random-access source of a genome's blocks (see ``GenomeBlocks``), prepared once per file."""
    builder = GenomeBlocks(fasta=str(fasta), data_dir=dataset_dir(data_dir))
    builder.download_and_prepare()
    return builder.as_data_source("genome")
