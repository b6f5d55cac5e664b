"""``python -m bioxlstm_jax.convert SRC DST``: official PyTorch checkpoint -> orbax checkpoint + config.

SRC (the format is detected from the files, or forced with ``--format``):
  prot: a Prot-xLSTM model directory with ``config.json`` and ``pytorch_model.bin``.
  dna:  a DNA-xLSTM Lightning ``.ckpt`` (``--model-config`` names its ``model_config.json``; default:
        the ``model_config.json`` in the run directory above the checkpoint) or a run directory.
  chem: a Chem-xLSTM ``epoch-XXX`` directory with ``model.pt``, and ``init_arguments.json`` there or
        one level up; ``--n-heads`` is required (Chem-xLSTM stores 1).
DST: a new directory with ``params/`` (orbax), ``model.json`` (``XLSTMConfig``) and, for chem, ``vocab.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bioxlstm_jax.convert.checkpoint import convert_checkpoint
from bioxlstm_jax.jobs.cli import EXPECTED_ERRORS, debug_requested, error_line


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and status 2, as every command
        print(error_line(f"{self.prog}: {message}"), file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m bioxlstm_jax.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--format", choices=["auto", "prot", "dna", "chem"], default="auto")
    parser.add_argument("--model-config", type=Path, default=None, help="DNA-xLSTM model_config.json")
    parser.add_argument("--n-heads", type=int, default=None, help="Chem-xLSTM number of heads (run name: _he{n})")
    parser.add_argument("--slstm-layout", choices=["cuda", "vanilla"], default="cuda")
    parser.add_argument("--debug", action="store_true", help="show an error's traceback (also: BIOXLSTM_DEBUG=1)")
    args = parser.parse_args(argv)
    try:
        cfg = convert_checkpoint(args.src, args.dst, fmt=args.format, model_config=args.model_config,
                                 n_heads=args.n_heads, slstm_layout=args.slstm_layout)
    except EXPECTED_ERRORS as e:
        if args.debug or debug_requested():
            raise
        print(error_line(e), file=sys.stderr)
        return 2
    print(f"wrote {args.dst}: {cfg.num_blocks} blocks, d={cfg.embedding_dim}, vocab={cfg.vocab_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
