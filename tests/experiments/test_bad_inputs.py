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

import ml_collections
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


def checkpoint(tmp: Path, name: str, preset: str, **changes) -> str:
    """A converted checkpoint (``model.json`` + ``params/``) of a tiny randomly initialised ``preset``."""
    import jax
    import jax.numpy as jnp

    from bioxlstm_jax import presets
    from bioxlstm_jax.convert.checkpoint import save_converted
    from bioxlstm_jax.nn import XLSTMLM

    cfg = presets.get(preset, num_blocks=1, mlstm_num_heads=1, **changes)
    params = XLSTMLM(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
    save_converted(tmp / name, cfg, params)
    return str(tmp / name)


def cut_row_msa(tmp: Path) -> str:
    """The BLAT MSA with its third row cut in the middle of a line (as a truncated copy)."""
    lines = text(MSA).splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith(">")]
    row = rows[2] + 1
    lines[row] = lines[row][: len(lines[row]) // 2]
    return make(tmp, "cut.a3m", "\n".join(lines) + "\n")


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
        r"is 'A' in the MSA, 'M' in the wild type; identity \d+\.\d% over the 286 aligned residues, 95% needed\)"),
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
    # a checkpoint of another domain or direction, refused before anything runs
    "prot_generate/dna_checkpoint": (
        "prot_generate", {"ckpt": lambda t: checkpoint(t, "dna_ckpt", "dna_small", embedding_dim=32,
                                                         bidirectional="sum"), "msa": str(MSA)},
        r"--config\.ckpt=.*dna_ckpt: its model reads 12 token ids, the protein vocabulary has 38 \(a checkpoint of "
        r"another domain\?\)"),
    "prot_generate/bidirectional_checkpoint": (
        "prot_generate", {"ckpt": lambda t: checkpoint(t, "mlm", "prot_small", embedding_dim=16,
                                                         bidirectional="sum"), "msa": str(MSA)},
        r"--config\.ckpt=.*mlm: this job needs a causal model .* this one has bidirectional='sum'"),
    "prot_fitness/dna_checkpoint": (
        "prot_fitness", {"ckpt": lambda t: checkpoint(t, "dna_ckpt", "dna_small", embedding_dim=32),
                         "dms": str(DMS), "msa": str(MSA), "replicates": 1},
        r"--config\.ckpt=.*dna_ckpt: its model reads 12 token ids, the protein vocabulary has 38"),
    "dna_embed/protein_checkpoint": (
        "dna_embed", {"ckpt": lambda t: checkpoint(t, "prot_ckpt", "prot_small", embedding_dim=16),
                      "fasta": lambda t: make(t, "x.fa", ">a\nACGT\n")},
        r"--config\.ckpt=.*prot_ckpt: its model reads 38 token ids, the DNA vocabulary has 12"),
    # readers name the file and the line
    "prot_fitness/cut_row": ("prot_fitness", {"ckpt": "/nonexistent", "dms": str(DMS), "msa": cut_row_msa},
                             r"cut\.a3m:\d+: row '.*' has \d+ match columns \(upper-case residues and '-'\), the "
                             r"query 286 \(a row cut short\?\)"),
    "chem_generate/unparsable_reference": (
        "chem_generate", {"ckpt": "/nonexistent", "reference": lambda t: make(t, "ref.smi", "C1CC\nCCO(\nc1cc\n")},
        r"ref\.smi:1: RDKit cannot parse this reference SMILES \(3 of the 3 reference molecules do not parse\)"),
    "chem_icl/bad_token": ("chem_icl", {"domains": lambda t: make(t, "d.txt", "CCO.CCN\nCCO.C!C.CN\nCO.CN\n")},
                           r"d\.txt:2: molecule 2 of the domain: SMILES 'C!C': no token covers '!'"),
    "dna_pretrain/bed_unknown_chromosome": (
        "dna_pretrain", {"bed": lambda t: make(t, "x.bed", "chr2\t100\t2000\ttrain\nchrX\t100\t2000\tvalid\n")},
        r"x\.bed:2: BED row on 'chrX': not a chromosome of the genome .*hg38_chr2"),
    "dna_pretrain/bed_context": ("dna_pretrain", {"bed": lambda t: make(t, "x.bed", "chr2\t100\t2000\ttrain\n"),
                                                  "context_length": 1000},
                                 r"--config\.context_length=1000: with --config\.bed every row is stretched"),
    # numbers checked where the config is read, never by numpy
    "dna_finetune/max_length": (
        "dna_finetune", {"train": lambda t: make(t, "train.csv", "sequence,label\nACGT,1\nACGA,0\n"),
                         "test": lambda t: make(t, "test.csv", "sequence,label\nACGT,1\n"), "max_length": -5},
        r"--config\.max_length=-5: expected an integer >= 1"),
    "dna_finetune/valid_fraction": (
        "dna_finetune", {"train": lambda t: make(t, "train.csv", "sequence,label\nACGT,1\nACGA,0\n"),
                         "test": lambda t: make(t, "test.csv", "sequence,label\nACGT,1\n"), "valid_fraction": 0.0},
        r"--config\.valid_fraction=0\.0: expected a value in \(0, 1\)"),
    "dna_variants/window": ("dna_variants", {"ckpt": "/nonexistent", "genome": str(GENOME), "variants": "v.tsv",
                                             "window": -4},
                            r"--config\.window=-4: expected an integer >= 1"),
    "dna_embed/batch_size": ("dna_embed", {"ckpt": "/nonexistent", "fasta": "x.fa", "batch_size": 0},
                             r"--config\.batch_size=0: expected an integer >= 1"),
    "prot_generate/num_samples": ("prot_generate", {"ckpt": "/nonexistent", "msa": str(MSA), "num_samples": 0},
                                  r"--config\.num_samples=0: expected an integer >= 1"),
    "prot_generate/n_context": ("prot_generate", {"ckpt": "/nonexistent", "msa": str(MSA), "n_context": -2},
                                r"--config\.n_context=-2: expected an integer >= -1"),
    "prot_fitness/max_context_tokens": ("prot_fitness", {"ckpt": "/nonexistent", "dms": str(DMS), "msa": str(MSA),
                                                         "max_context_tokens": 0},
                                        r"--config\.max_context_tokens=0: expected an integer >= 1"),
    "proteingym/segment_length": ("proteingym", {"ckpt": "/nonexistent", "segment_length": -1},
                                  r"--config\.segment_length=-1: expected an integer >= 1"),
    "chem_generate/reference_size": ("chem_generate", {"ckpt": "/nonexistent", "reference_size": -1},
                                     r"--config\.reference_size=-1: expected an integer >= 0"),
    "chem_icl/n_rank": ("chem_icl", {"n_rank": 0}, r"--config\.n_rank=0: expected an integer >= 1"),
    "dna_pretrain/mlm_probability": ("dna_pretrain", {"mlm_probability": 1.5},
                                     r"--config\.mlm_probability=1\.5: expected a value in \(0, 1\)"),
    "prot_pretrain/fim_mask_fraction": ("prot_pretrain", {"fim_mask_fraction": 0.0},
                                        r"--config\.fim_mask_fraction=0\.0: expected a value in \(0, 1\]"),
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


def test_an_error_under_an_open_progress_bar_is_the_last_line(capsys):
    """A progress bar open when a job fails is closed first: the error starts its own line, last."""
    from tqdm.auto import tqdm

    def job(config, workdir):
        bar = tqdm(total=10, desc="work")
        bar.update(3)
        raise ValueError("x.txt:3: something expected")

    assert execute(job, ml_collections.ConfigDict(), "unused") == 2
    err = capsys.readouterr().err
    assert err.endswith("\nerror: x.txt:3: something expected\n"), err[-200:]


def test_a_checkpoint_loads_quietly(tmp_path):
    """Loading a checkpoint read-only (a training workdir's, a converted one) prints no orbax warning
    ("Given directory is read only", "read_only=True, setting save_interval_steps=0")."""
    import jax
    import orbax.checkpoint as ocp

    ckpt = checkpoint(tmp_path, "ckpt", "prot_small", embedding_dim=16)
    workdir = tmp_path / "run"
    params = jax.tree.map(lambda x: x + 0, __import__("bioxlstm_jax.convert.checkpoint",
                                                      fromlist=["x"]).load_converted(ckpt)[1])
    with ocp.CheckpointManager(workdir / "checkpoints", item_names=("state",)) as manager:
        manager.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": params})))
        manager.wait_until_finished()
    script = ("from bioxlstm_jax.convert.checkpoint import load_converted; "
              "from bioxlstm_jax.training.checkpoints import read_params; "
              f"load_converted({ckpt!r}); read_params({str(workdir)!r}); print('loaded')")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env=dict(os.environ, JAX_PLATFORMS="cpu",
                                  PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])))
    assert (res.returncode, res.stdout) == (0, "loaded\n"), res.stderr
    assert "absl" not in res.stderr and "read only" not in res.stderr and "read_only" not in res.stderr, res.stderr
