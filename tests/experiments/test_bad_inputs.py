"""Every command refuses bad input in one line, before writing anything.

One case per class of bad input per command, each built from a real file cut in the test (truncated,
binary, wrong content) or a bad flag. Each runs the job the way its command does
(``jobs.cli.execute``, in this process: the errors come before any compilation) and asserts the exit
status 2, the single ``error: <file>:<line>: ...`` / ``error: --config.key=...: ...`` line and that
the workdir was never created. Two cases go through the real command line (flag parsing, ``--debug``).
"""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bioxlstm_jax import jobs
from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.jobs.cli import execute
from tests.helpers import xla_flags

ROOT = Path(__file__).resolve().parents[2]
BLAT = asset_path("protein", "BLAT_ECOLX")
DMS = BLAT / "BLAT_ECOLX_Jacquier_2013.csv.gz"
MSA = BLAT / "BLAT_ECOLX_ColabFold_2202_poet.a3m.gz"
SMILES = asset_path("chem", "chembl_valid_5k.txt.gz")
GENOME = asset_path("dna", "hg38_chr2_1-2333275.fa.gz")


def text(path) -> str:
    return gzip.decompress(Path(path).read_bytes()).decode()


def truncated_gzip(path) -> bytes:
    data = Path(path).read_bytes()
    return data[: len(data) // 3]


def dms_lines() -> list[str]:
    return text(DMS).splitlines()


def make(tmp: Path, name: str, data: str | bytes) -> str:
    path = tmp / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


# (command, {config key: value or a function of tmp_path making the file}, expected message pattern)
CASES = {
    "chem_pretrain/truncated_gzip": ("chem_pretrain", {"train": lambda t: make(t, "train.txt.gz", truncated_gzip(SMILES))},
                                     r"train\.txt\.gz:\d+: the gzip stream ends early \(truncated file\?\)"),
    "chem_pretrain/binary": ("chem_pretrain", {"train": lambda t: make(t, "train.txt", os.urandom(4096))},
                             r"train\.txt:1: not UTF-8 text \(byte 0x[0-9a-f]{2}; a binary file\?\)"),
    "chem_pretrain/unknown_token_in_valid": (
        "chem_pretrain", {"train": lambda t: make(t, "train.txt", "CCO\nCCN\nc1ccccc1\n"),
                          "valid": lambda t: make(t, "valid.txt", "CCO\n[Se]CC\n")},
        r"valid\.txt:2: SMILES '\[Se\]CC': tokens .* not in the vocabulary learned from the training file .*train\.txt"),
    "chem_pretrain/batch_size": ("chem_pretrain", {"batch_size": 0}, r"--config\.batch_size=0: expected an integer >= 1"),
    "chem_pretrain/context_length": ("chem_pretrain", {"context_length": 0},
                                     r"--config\.context_length=0: expected an integer >= 1"),
    "prot_pretrain/optimizer": ("prot_pretrain", {"optimizer.name": "adamx"},
                                r"--config\.optimizer\.name='adamx': expected one of adamw, sgd"),
    "prot_pretrain/steps": ("prot_pretrain", {"steps": -1}, r"--config\.steps=-1: expected an integer >= 1"),
    "dna_pretrain/truncated_genome": ("dna_pretrain", {"fasta": lambda t: make(t, "g.fa.gz", truncated_gzip(GENOME))},
                                      r"g\.fa\.gz:\d+: the gzip stream ends early"),
    "dna_pretrain/j_in_genome": ("dna_pretrain", {"fasta": lambda t: make(t, "g.fa", ">chr1\n" + "acgt" * 300 + "\nacgjn\n")},
                                 r"g\.fa:3: characters 'j' are not in the alphabet"),
    "dna_pretrain/ragged_bed": ("dna_pretrain", {"bed": lambda t: make(t, "r.bed", "chr2\t100\t2000000\ttrain\nchr2\t7\n")},
                                r"r\.bed:2: expected 'chrom start end \[split\]', got 'chr2\\t7'"),
    "dna_finetune/negative_label": (
        "dna_finetune", {"train": lambda t: make(t, "train.csv", "sequence,label\nACGT,1\nACGA,-1\n"),
                         "test": lambda t: make(t, "test.csv", "sequence,label\nACGT,1\n")},
        r"train\.csv:3: expected a class index \(an integer >= 0\) as the label, got '-1'"),
    "dna_finetune/extra_field": (
        "dna_finetune", {"train": lambda t: make(t, "train.csv", "sequence,label\nACGT,1\nACGA,0,1\n"),
                         "test": lambda t: make(t, "test.csv", "sequence,label\nACGT,1\n")},
        r"train\.csv:3: expected 2 fields as the header, got 3"),
    "dna_finetune/unseen_test_label": (
        "dna_finetune", {"train": lambda t: make(t, "train.csv", "sequence,label\n" + "ACGT,1\nACGA,0\n" * 10),
                         "valid": lambda t: make(t, "valid.csv", "sequence,label\nACGT,1\n"),
                         "test": lambda t: make(t, "test.csv", "sequence,label\nACGT,2\n")},
        r"test\.csv: labels \[2\] of the test rows never occur in the training rows \(labels \[0, 1\]\)"),
    "prot_generate/temperature": ("prot_generate", {"ckpt": "/nonexistent", "msa": str(MSA), "temperature": -1.0},
                                  r"--config\.temperature=-1\.0: expected >= 0 \(0 = greedy\)"),
    "prot_generate/spans": ("prot_generate", {"ckpt": "/nonexistent", "msa": str(MSA), "target_seq": "MKVLAAGIV",
                                              "spans": "40-31"},
                            r"--config\.spans: '40-31' is not '<first>-<last>' with 1 <= first <= last"),
    "prot_generate/target_J": ("prot_generate", {"ckpt": "/nonexistent", "msa": str(MSA), "target_seq": "MKJL",
                                                 "spans": "2-3"},
                               r"--config\.target_seq: 'J' are not residues"),
    "chem_generate/top_p": ("chem_generate", {"ckpt": "/nonexistent", "top_p": 0.0},
                            r"--config\.top_p=0\.0: expected a value in \(0, 1\]"),
    "prot_fitness/msa_of_another_protein": (
        "prot_fitness", {"ckpt": "/nonexistent", "dms": str(DMS),
                         "msa": lambda t: make(t, "other.a3m", "\n".join(
                             f">s{i}\n{'ACDEFGHIKLMNPQRSTVWY'[i % 20] * 286}" for i in range(3)) + "\n")},
        r"other\.a3m: the first row \(the query\) is not the wild type: \d+ of 286 residues differ \(first: residue 1 "
        r"is 'A' in the MSA, 'M' in the wild type\)"),
    "prot_fitness/J_in_msa": (
        "prot_fitness", {"ckpt": "/nonexistent", "dms": str(DMS),
                         "msa": lambda t: make(t, "j.a3m", text(MSA).replace("\n", "J\n", 2).replace("J\n", "\n", 1))},
        r"j\.a3m:2: characters 'J' are not allowed in an alignment row"),
    "prot_fitness/wild_type_conflict": (
        "prot_fitness", {"ckpt": "/nonexistent", "msa": str(MSA),
                         "dms": lambda t: make(t, "conflict.csv", "\n".join(
                             [dms_lines()[0], dms_lines()[1].replace(",M", ",A", 1)] + dms_lines()[2:6]) + "\n")},
        r"conflict\.csv:2: this row implies another wild type than the other 4 rows \(residue 1: 'A' here, 'M' there\)"),
    "prot_fitness/ragged_dms": (
        "prot_fitness", {"ckpt": "/nonexistent", "msa": str(MSA),
                         "dms": lambda t: make(t, "ragged.csv", "\n".join(dms_lines()[:3] + [dms_lines()[3] + ",7"]) + "\n")},
        r"ragged\.csv:4: expected \d+ fields as the header, got \d+"),
    "proteingym/unknown_assay": ("proteingym", {"ckpt": "/nonexistent", "dms_ids": "BLAT_ECOLX_Deng_2012,NOPE"},
                                 r"--config\.dms_ids: NOPE not in .*DMS_substitutions_BLAT_ECOLX\.csv\.gz"),
    "proteingym/missing_folder": ("proteingym", {"ckpt": "/nonexistent", "reference": str(BLAT / "DMS_substitutions_BLAT_ECOLX.csv.gz"),
                                                 "dms_dir": "/nonexistent_dms", "msa": str(MSA)},
                                  r"--config\.dms_dir=/nonexistent_dms: no such folder"),
    "dna_embed/binary_fasta": ("dna_embed", {"ckpt": "/nonexistent", "fasta": lambda t: make(t, "x.fa", b">a\nACGT\n>b\nAC\xffGT\n")},
                               r"x\.fa:4: not UTF-8 text \(byte 0xff; a binary file\?\)"),
    "dna_embed/bad_base": ("dna_embed", {"ckpt": "/nonexistent", "fasta": lambda t: make(t, "x.fa", ">a\nACGT\n>b\nACJT\n")},
                           r"x\.fa:4: characters 'J' are not in the alphabet"),
    "chem_icl/one_molecule_domain": ("chem_icl", {"domains": lambda t: make(t, "d.txt", "CCO.CCN\nCCC\nCO.CN\n")},
                                     r"d\.txt:2: a domain needs at least 2 molecules joined by '\.', got 1"),
    "chem_icl/heldout": ("chem_icl", {"domains": lambda t: make(t, "d.txt", "CCO.CCN\nCO.CN\n"), "heldout": 2},
                         r"d\.txt: 2 domains; --config\.heldout must be in \[1, 1\]"),
    "dna_variants/label": (
        "dna_variants", {"ckpt": "/nonexistent", "genome": str(GENOME),
                         "variants": lambda t: make(t, "v.tsv", "chrom\tpos\tref\talt\tlabel\nchr2\t20000\tA\tG\t1\n"
                                                    "chr2\t20010\tC\tT\tmaybe\n")},
        r"v\.tsv:3: expected a label 0 or 1, got 'maybe'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2_and_nothing_is_written(case, tmp_path, capsys):
    import importlib

    command, changes, pattern = CASES[case]
    config = importlib.import_module(f"experiments.{command}").get_config()
    config.update_from_flattened_dict({k: v(tmp_path) if callable(v) else v for k, v in changes.items()})
    if "tfds_dir" in config:
        config.tfds_dir = str(tmp_path / "cache")
    config.progress = False
    workdir = tmp_path / "run"
    assert execute(getattr(jobs, command), config, str(workdir)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err) == 1, err
    import re

    assert re.search(pattern, err[0]), err[0]
    assert not workdir.exists()


def command(*args, **env):
    e = dict(os.environ, XLA_FLAGS=xla_flags(1), JAX_PLATFORMS="cpu", **env)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", *args], env=e, capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


def test_the_command_line_prints_one_line_and_debug_shows_the_traceback(tmp_path):
    res = command("experiments.dna_finetune", f"--workdir={tmp_path / 'run'}", "--config.steps=300")
    assert (res.returncode, res.stderr) == (2, "error: --config.steps: no such config key\n")
    args = ("experiments.chem_generate", f"--workdir={tmp_path / 'run'}", "--config.ckpt=x", "--config.temperature=-1")
    res = command(*args)
    assert (res.returncode, res.stderr) == (2, "error: --config.temperature=-1.0: expected >= 0 (0 = greedy)\n")
    res = command(*args, "--debug")
    assert res.returncode == 1 and "Traceback" in res.stderr and res.stderr.rstrip().endswith(
        "ValueError: --config.temperature=-1.0: expected >= 0 (0 = greedy)")
    assert not (tmp_path / "run").exists()
