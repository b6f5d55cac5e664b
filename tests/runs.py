"""The experiments as commands, run the way a new user runs them, and the small runs the tests share.

``run_command`` starts ``python -m <module>`` from an empty working directory with its own ``HOME`` and
``TMPDIR`` and no ``BIOXLSTM_DATA_DIR``, so prepared datasets go to the documented default cache
``~/.cache/bioxlstm_jax``; afterwards it fails the test if the command wrote anything in the working
directory outside the outputs the test names, anything in ``HOME`` outside that cache (and matplotlib's
font cache), or left anything in ``TMPDIR``. Every experiment the tests run goes through it.

The session fixtures train each small model once (``prot_run``, ``chem_run``, ``dna_mlm_ps_run``) from
the command's defaults plus a tiny config; the CLI tests (and the protein and chemistry notebooks)
reuse them. With pytest-xdist each group of tests that shares a run is kept on one worker
(``xdist_group``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bioxlstm_jax.assets import asset_path
from bioxlstm_jax.data.smiles import read_smiles
from tests.helpers import xla_flags

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(".cache") / "bioxlstm_jax"  # under HOME: the default data_dir of every experiment
LIBRARY_CACHES = [Path(".cache") / "matplotlib"]  # matplotlib's font list, built once per HOME by any plot
_HOME: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def _command_home(tmp_path_factory):
    """One HOME for all commands of a session (worker), so the default data cache is shared."""
    global _HOME
    _HOME = tmp_path_factory.mktemp("home")
    yield _HOME


def _new_dir(prefix: str) -> Path:
    """A new empty folder beside this session's HOME (inside pytest's temporary tree)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=(_HOME or Path(tempfile.mkdtemp())).parent))


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if not p.is_dir()}


def _outside(files: set[Path], allowed: list[Path]) -> list[str]:
    return sorted(str(f) for f in files if not any(f == a or a in f.parents for a in allowed))


def run_command(module: str, *args: str, cwd: str | os.PathLike | None = None, outputs=(), ok: bool = True,
                devices: int = 2, timeout: int = 900) -> subprocess.CompletedProcess:
    """``python -m module *args`` from ``cwd`` (default: a new empty folder); ``outputs`` are the paths
    (relative to ``cwd``) the command may write there. Asserts exit status 0 when ``ok``."""
    home = _HOME or _new_dir("home_")
    cwd = Path(cwd) if cwd is not None else _new_dir("cwd_")
    tmp = _new_dir("tmp_")
    env = {k: v for k, v in os.environ.items() if k != "BIOXLSTM_DATA_DIR" and not k.startswith("XDG_")}
    env.update(HOME=str(home), TMPDIR=str(tmp), XLA_FLAGS=xla_flags(devices),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    before_cwd, before_home = _files(cwd), _files(home)
    res = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    log = res.stdout[-3000:] + res.stderr[-3000:]
    if ok:
        assert res.returncode == 0, log
    stray = _outside(_files(cwd) - before_cwd, [Path(o) for o in outputs])
    assert not stray, f"{module} wrote outside its outputs {list(outputs)} in {cwd}: {stray[:10]}"
    stray = _outside(_files(home) - before_home, [CACHE, *LIBRARY_CACHES])
    assert not stray, f"{module} wrote outside {CACHE} in HOME: {stray[:10]}"
    left = sorted(str(p) for p in _files(tmp))
    assert not left, f"{module} left temporary files: {left[:10]}"
    return res


# ---------------------------------------------------------------------------------------------------
# small runs shared by the tests

PROT_TINY = ["--config.model.embedding_dim=16", "--config.model.num_blocks=1",
             "--config.context_length=256", "--config.model.chunk_size=32", "--config.batch_size=8",
             "--config.eval_batch_size=8", "--config.eval_every=2", "--config.eval_steps=1",
             "--config.checkpoint_every=2", "--config.log_every=1", "--config.progress=False",
             "--config.async_checkpoint=False"]
CHEM_TINY = ["--config.model.embedding_dim=16", "--config.model.num_blocks=1",
             "--config.model.mlstm_num_heads=1", "--config.batch_size=8", "--config.eval_batch_size=8",
             "--config.eval_every=2", "--config.eval_steps=2", "--config.checkpoint_every=2", "--config.log_every=1",
             "--config.progress=False", "--config.async_checkpoint=False"]
DNA_TINY = ["--config.model.embedding_dim=32", "--config.model.num_blocks=1",
            "--config.model.mlstm_num_heads=1", "--config.model.chunk_size=32",
            "--config.context_length=128", "--config.batch_size=4", "--config.eval_batch_size=4",
            "--config.eval_every=2", "--config.eval_steps=2", "--config.checkpoint_every=2", "--config.log_every=1",
            "--config.progress=False", "--config.async_checkpoint=False", "--config.optimizer.warmup_steps=1"]


def train_run(module: str, *flags: str) -> Path:
    """Run a training command with its default workdir (``runs/<name>``) from an empty folder."""
    wd = Path("runs") / module.rsplit(".", 1)[-1]
    cwd = _new_dir("cwd_")
    run_command(module, *flags, cwd=cwd, outputs=[wd])
    return cwd / wd


@pytest.fixture(scope="session")
def prot_run() -> Path:
    """prot_pretrain on the shipped clusters, 4 steps of a 1-block 16-d model (checkpoints at 2 and 4)."""
    return train_run("experiments.prot_pretrain", "--config.steps=4", *PROT_TINY)


@pytest.fixture(scope="session")
def chem_data(tmp_path_factory) -> dict[str, Path]:
    """400 / 40 / 40 real ChEMBL SMILES as train / valid / test files."""
    tmp = tmp_path_factory.mktemp("chem_data")
    smiles = [s for _, s in read_smiles(asset_path("chem", "chembl_valid_5k.txt.gz"))]
    paths = {}
    for split, lines in {"train": smiles[:400], "valid": smiles[400:440], "test": smiles[440:480]}.items():
        paths[split] = tmp / f"{split}.smi"
        paths[split].write_text("\n".join(lines) + "\n")
    return paths


@pytest.fixture(scope="session")
def chem_run(chem_data) -> Path:
    """chem_pretrain on ``chem_data``, 4 steps of a 1-block 16-d model."""
    return train_run("experiments.chem_pretrain", "--config.steps=4",
                     *[f"--config.{s}={p}" for s, p in chem_data.items()], *CHEM_TINY)


@pytest.fixture(scope="session")
def dna_mlm_ps_run() -> Path:
    """dna_pretrain (masked LM, bidirectional, RC parameter sharing) on the shipped hg38 fragment, 4 steps."""
    return train_run("experiments.dna_pretrain", "--config.steps=4", "--config.rc=ps", *DNA_TINY)
