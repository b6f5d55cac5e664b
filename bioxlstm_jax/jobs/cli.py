"""The one command-line convention of every job (big_vision / flax-examples style).

    python -m experiments.X [--workdir DIR] [--config.key=value ...] [--debug]

``run(job, get_config, default_workdir)`` defines the flags, starts ``jax.distributed`` when the config
asks for several processes (``config.distributed``, training jobs), then calls ``job(config, workdir)``.
A job writes everything it makes under ``workdir``; training jobs resume from it when the same command
is run again.

Model settings: every job that builds or loads a model has ``config.model`` (``model_flags``), one
entry per ``XLSTMConfig`` field, unset by default: ``--config.model.remat=block``,
``--config.model.kernel=xla``, ``--config.model.chunk_size=128`` or ``--config.model.embedding_dim=64``
change that field of the preset (training jobs, ``--config.preset``) or of the checkpoint
(``--config.ckpt``) the same way in every job (``model_config``).

Errors: a bad flag or input (``ValueError``, ``OSError``, a corrupt gzip or zip file, ...) prints one
line, ``error: <file>:<line>: <what was expected, what was found>`` or ``error: --flag: ...``, and exits
with status 2; ``--debug`` (or ``BIOXLSTM_DEBUG=1``) shows the traceback instead. Any other exception
is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
import zipfile
import zlib
from collections.abc import Callable

import ml_collections

__all__ = ["run", "execute", "require", "require_positive", "require_fraction", "load_model", "EXPECTED_ERRORS", "error_line", "debug_requested",
           "model_flags", "model_changes", "model_config"]

# what bad input or a bad run condition raises (the readers name the file and line in the message)
EXPECTED_ERRORS = (ValueError, OSError, EOFError, FloatingPointError, zlib.error, zipfile.BadZipFile)


def error_line(e: BaseException) -> str:
    """``e`` as the one line a command prints: ``error: <message>``."""
    text = " ".join(str(e).split()) or type(e).__name__
    return f"error: {text}"


def debug_requested() -> bool:
    return os.environ.get("BIOXLSTM_DEBUG", "") not in ("", "0")


def execute(job: Callable[[ml_collections.ConfigDict, str], object], config: ml_collections.ConfigDict,
            workdir: str, debug: bool = False) -> int:
    """Runs ``job(config, workdir)`` (after ``jax.distributed`` when configured); returns the exit
    status: 0, or 2 after printing ``error_line`` for an expected error (re-raised when ``debug``)."""
    try:
        if "distributed" in config:
            from bioxlstm_jax.training.mesh import initialize_distributed

            d = config.distributed
            initialize_distributed(d.coordinator_address or None, d.num_processes or None,
                                   d.process_id if d.process_id >= 0 else None)
        job(config, workdir)
    except EXPECTED_ERRORS as e:
        if debug or debug_requested():
            raise
        close_progress_bars()
        print(error_line(e), file=sys.stderr, flush=True)
        return 2
    return 0


def close_progress_bars() -> None:
    """Closes every open tqdm bar (each ends its line), so that what is printed next starts a line."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def run(job: Callable[[ml_collections.ConfigDict, str], object],
        get_config: Callable[[], ml_collections.ConfigDict], default_workdir: str) -> None:
    """The command: parses ``--workdir``, ``--config.key=value`` and ``--debug``, runs ``execute``, exits
    with its status. A bad flag is one line and status 2 as well."""
    from absl import app, flags, logging
    from ml_collections import config_flags

    defaults = get_config()

    def flag_error(e: Exception, argv: list[str]):
        unknown = [a.split("=", 1)[0][len("--config."):] for a in argv[1:] if a.startswith("--config.")
                   and not _has_key(defaults, a.split("=", 1)[0][len("--config."):])]
        print(error_line(_unknown_key(defaults, unknown[0]) if unknown else e), file=sys.stderr, flush=True)
        sys.exit(2)

    try:  # the config flag applies the --config.key=value overrides of sys.argv as it is defined
        config_flag = config_flags.DEFINE_config_dict("config", get_config(), "job config; override fields with "
                                                      "--config.key=value", lock_config=True)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        flag_error(e, sys.argv)
    workdir_flag = flags.DEFINE_string("workdir", default_workdir, "where the job writes (a training run "
                                       "resumes from it)")
    debug_flag = flags.DEFINE_bool("debug", False, "show an error's traceback (also: BIOXLSTM_DEBUG=1)")

    def parse(argv):
        try:
            rest = flags.FLAGS(argv)
        except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
            flag_error(e, argv)
        if len(rest) > 1:
            print(error_line(f"unexpected arguments: {' '.join(rest[1:])} (every option is --workdir, "
                             "--config.key=value or --debug)"), file=sys.stderr, flush=True)
            sys.exit(2)
        return rest

    def main(argv):
        logging.set_verbosity(logging.WARNING)  # orbax logs every file operation at INFO
        sys.exit(execute(job, config_flag.value, workdir_flag.value, debug_flag.value))

    app.run(main, flags_parser=parse)


def _has_key(config: ml_collections.ConfigDict, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(config, ml_collections.ConfigDict) or part not in config:
            return False
        config = config[part]
    return True


def _unknown_key(config: ml_collections.ConfigDict, dotted: str) -> str:
    """The message for ``--config.<dotted>`` that is not a key: where a model setting lives, or the
    valid keys of the group it names (``--config.model.*``, ``--config.optimizer.*``, ...)."""
    *parents, leaf = dotted.split(".")
    message = f"--config.{dotted}: no such config key"
    if not parents:
        return message + (f"; model settings are --config.model.{leaf}" if "model" in config
                          and leaf in _model_fields() else "")
    for part in parents:
        config = config.get(part) if isinstance(config, ml_collections.ConfigDict) else None
    if not isinstance(config, ml_collections.ConfigDict):
        return message
    return message + f"; --config.{'.'.join(parents)} has " + ", ".join(sorted(config.keys()))


def _model_fields() -> dict[str, type]:
    """``XLSTMConfig`` field -> the type its flag parses (int, float, bool, str or tuple)."""
    from bioxlstm_jax.nn.config import XLSTMConfig

    hints = typing.get_type_hints(XLSTMConfig)
    kinds = {}
    for f in dataclasses.fields(XLSTMConfig):
        kind = hints[f.name]
        optional = typing.get_origin(kind) in (typing.Union, types.UnionType)  # X | None
        base = next(o for o in typing.get_args(kind) if o is not type(None)) if optional else kind
        kinds[f.name] = typing.get_origin(base) or base
    return kinds


def model_flags(**defaults) -> ml_collections.ConfigDict:
    """``config.model``: one entry per ``XLSTMConfig`` field, unset (None: the preset's or checkpoint's
    value) unless the job gives a default."""
    from ml_collections.config_dict import placeholder

    kinds = _model_fields()
    unknown = set(defaults) - set(kinds)
    if unknown:
        raise ValueError(f"model_flags: {sorted(unknown)} are not XLSTMConfig fields")
    return ml_collections.ConfigDict({k: defaults[k] if k in defaults else placeholder(t) for k, t in kinds.items()})


def model_changes(config: ml_collections.ConfigDict) -> dict:
    """The ``XLSTMConfig`` fields set in ``config.model`` (``{}`` when the config has none)."""
    model = config.get("model")
    return {} if model is None else {k: v for k, v in model.to_dict().items() if v is not None}


def model_config(config: ml_collections.ConfigDict, base, **derived):
    """The run's ``XLSTMConfig``: ``base`` (a preset name or an ``XLSTMConfig``) with the job's
    ``derived`` values (context length, vocabulary, ...), then ``config.model`` on top. A bad value is
    a ``ValueError`` naming ``--config.model``."""
    from bioxlstm_jax import presets

    if isinstance(base, str):
        if base not in presets.names():
            raise ValueError(f"--config.preset={base!r}: expected one of {', '.join(presets.names())}")
        base = presets.get(base)
    changes = model_changes(config)
    try:
        return base.replace(**{**derived, **changes})
    except ValueError as e:  # name the override at fault (XLSTMConfig names its field), else all of them
        named = [k for k in changes if k in str(e)] or list(changes)
        where = ", ".join(f"--config.model.{k}={changes[k]!r}" for k in named)
        raise ValueError(f"{where}: {e}" if changes else str(e)) from None


def load_model(config: ml_collections.ConfigDict, *, vocab_size: int | None = None, domain: str = "",
               causal: bool = False):
    """``inference.load_lm(--config.ckpt)`` with ``config.model`` applied, refused (``ValueError`` naming
    ``--config.ckpt``) unless its model reads the ``vocab_size`` token ids of ``domain`` and, with
    ``causal``, is causal (generation, state passing)."""
    from bioxlstm_jax.inference import load_lm

    model, params = load_lm(config.ckpt, **model_changes(config))
    cfg = model.config
    if vocab_size is not None and cfg.vocab_size != vocab_size:
        raise ValueError(f"--config.ckpt={config.ckpt}: its model reads {cfg.vocab_size} token ids, the {domain} "
                         f"vocabulary has {vocab_size} (a checkpoint of another domain?)")
    if causal and not cfg.causal:
        raise ValueError(f"--config.ckpt={config.ckpt}: this job needs a causal model (bidirectional='none', "
                         f"rcps=False, causal convs); this one has bidirectional={cfg.bidirectional!r}, "
                         f"rcps={cfg.rcps}")
    return model, params


def require(config: ml_collections.ConfigDict, *keys: str) -> None:
    """Raises ``ValueError`` naming every ``--config.<key>`` that is unset (None or empty)."""
    missing = [k for k in keys if config.get(k) in (None, "")]
    if missing:
        raise ValueError("missing " + ", ".join(f"--config.{k}" for k in missing))


def require_positive(config: ml_collections.ConfigDict, *keys: str, low: int = 1) -> None:
    """Raises ``ValueError`` naming the first ``--config.<key>`` that is not an integer >= ``low``
    (an unset optional key passes)."""
    for k in keys:
        value = config[k]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"--config.{k}={value!r}: expected an integer >= {low}")


def require_fraction(config: ml_collections.ConfigDict, key: str, interval: str = "[0, 1]") -> None:
    """Raises ``ValueError`` unless ``--config.<key>`` lies in ``interval`` (``"[0, 1]"``, ``"(0, 1]"``,
    ``"[0, 1)"`` or ``"(0, 1)"``)."""
    value = config[key]
    low_ok = value > 0 if interval[0] == "(" else value >= 0
    high_ok = value < 1 if interval[-1] == ")" else value <= 1
    if not (low_ok and high_ok):
        raise ValueError(f"--config.{key}={value!r}: expected a value in {interval}")
