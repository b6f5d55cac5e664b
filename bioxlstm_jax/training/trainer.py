"""The one training loop every experiment calls: ``train(config, workdir, task)``.

The config (``base_config()`` plus the experiment's own fields) fixes the optimizer, mesh, batch,
logging and checkpointing; the ``Task`` supplies the model's init and loss and the data. Runs are
resumed from ``workdir``: re-running the same command continues from the latest checkpoint with the
same parameters, optimizer state, RNG and data position, so the result equals an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from bioxlstm_jax.io import atomic_write, workdir_lock
from bioxlstm_jax.training import losses
from bioxlstm_jax.training.checkpoints import Checkpoints
from bioxlstm_jax.training.logger import MetricLogger, plot_curves
from bioxlstm_jax.training.mesh import (
    CONTEXT_AXIS,
    batch_sharding,
    global_batch,
    make_mesh,
    param_shardings,
    replicated,
)
from bioxlstm_jax.training.optim import make_optimizer

__all__ = ["TrainState", "Task", "base_config", "train", "make_train_step", "make_eval_step", "init_state",
           "training_plan", "format_plan",
           "check_config", "check_resume", "data_fingerprint", "RESUMABLE_KEYS"]


def base_config() -> ml_collections.ConfigDict:
    """Trainer fields shared by every experiment (experiments add model and data fields)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.steps = 1000
    c.batch_size = 8  # global sequences per optimizer step (all devices, all micro-batches)
    c.grad_accum = 1  # micro-batches per step; batch_size must divide by grad_accum x devices
    c.eval_batch_size = 8
    c.eval_every = 100  # 0 = never
    c.eval_steps = 10  # batches per evaluation
    c.log_every = 10
    c.checkpoint_every = 100
    c.keep_checkpoints = 3
    c.async_checkpoint = True
    c.best_metric = "eval/loss"  # "" = no best-checkpoint
    c.best_mode = "min"  # or "max" (e.g. eval/accuracy)
    c.patience = 0  # early stopping: stop after this many evaluations without a better best_metric (0 = off)
    c.optimizer = ml_collections.ConfigDict(dict(
        name="adamw", lr=6e-4, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, weight_decay_exclude="", clip_norm=1.0,
        schedule="constant", warmup_steps=500, warmup_init_lr=0.0, min_lr=1e-4))
    # context > 1 splits each sequence over that many devices (exact; causal mLSTM models, length a multiple)
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, context=1, fsdp_min_size=2**14))  # see training.mesh
    c.distributed = ml_collections.ConfigDict(dict(coordinator_address="", num_processes=0, process_id=-1))
    c.progress = True
    c.allow_changes = ""  # comma-separated config keys that may differ from the workdir's run on resume
    return c


# model settings that may change when a run resumes: how the model runs, not what it computes
MODEL_RESUMABLE_KEYS = ("remat", "remat_segment", "kernel")
# keys that may change when a run resumes (how it runs, not what it learns)
RESUMABLE_KEYS = ("steps", "progress", "log_every", "eval_every", "eval_steps", "eval_batch_size", "checkpoint_every",
                  "keep_checkpoints", "async_checkpoint", "grad_accum", "patience", "mesh", "distributed",
                  "allow_changes", *(f"model.{k}" for k in MODEL_RESUMABLE_KEYS))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ``ValueError`` naming the first trainer field out of its range or set of names
    (``--config.key=value: what was expected``), before anything is built or written."""
    from bioxlstm_jax.training.optim import OPTIMIZERS, SCHEDULES

    flat = _flat(config.to_dict())

    def bad(key, expected):
        raise ValueError(f"--config.{key}={flat[key]!r}: {expected}")

    for key, low in (("steps", 1), ("batch_size", 1), ("grad_accum", 1), ("eval_batch_size", 1), ("log_every", 1),
                     ("checkpoint_every", 1), ("keep_checkpoints", 1), ("eval_every", 0), ("eval_steps", 1),
                     ("patience", 0)):
        if key in config and (not isinstance(config[key], int) or config[key] < low):
            bad(key, f"expected an integer >= {low}")
    if config.get("best_mode", "min") not in ("min", "max"):
        bad("best_mode", "expected 'min' or 'max'")
    if config.get("patience", 0) and not config.best_metric:
        bad("patience", "early stopping needs --config.best_metric")
    opt = config.optimizer
    if opt.name not in OPTIMIZERS:
        bad("optimizer.name", f"expected one of {', '.join(OPTIMIZERS)}")
    if opt.schedule not in SCHEDULES:
        bad("optimizer.schedule", f"expected one of {', '.join(SCHEDULES)}")
    for key in ("lr", "warmup_steps", "weight_decay", "clip_norm", "min_lr", "warmup_init_lr"):
        if opt[key] < 0:
            bad(f"optimizer.{key}", "expected a value >= 0")
    for key in ("data", "fsdp", "context"):
        value = config.mesh.get(key, 1)
        if not isinstance(value, int) or value < 1 and not (key == "data" and value == -1):
            bad(f"mesh.{key}", "expected a positive device count (data: -1 = all the devices fsdp and context leave)")
    unknown = [k for k in _allowed(config) if k not in flat]
    if unknown:
        bad("allow_changes", f"{', '.join(unknown)} is not a config key")


DATA_FILE = "data.json"  # the run's data fingerprint


def data_fingerprint(example: dict, processes: int) -> str:
    """``data.json``: SHA-256 of the first local training batch (keys, dtypes, shapes and bytes) and the
    process count. The same data, seed and batch size give the same batch."""
    digest = hashlib.sha256()
    for key in sorted(example):
        x = np.ascontiguousarray(example[key])
        digest.update(f"{key}:{x.dtype}:{x.shape};".encode())
        digest.update(x.tobytes())
    return json.dumps({"first_batch_sha256": digest.hexdigest(), "processes": processes}, indent=1)


def _allowed(config) -> list[str]:
    return [k.strip() for k in config.get("allow_changes", "").split(",") if k.strip()]


def _has_checkpoint(workdir: Path) -> bool:
    folder = workdir / "checkpoints"
    return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


def check_resume(workdir: Path, config: ml_collections.ConfigDict, files: dict[str, str]) -> None:
    """Refuses to resume a run of another configuration: when ``workdir`` holds a checkpoint, its
    ``config.json`` may differ from ``config`` only in ``RESUMABLE_KEYS`` and the keys listed in
    ``config.allow_changes`` (e.g. another data file, on purpose), and every other file it wrote
    (``model.json`` but for ``MODEL_RESUMABLE_KEYS``, a tokenizer's ``vocab.json``) must be the same; ``data.json`` (a hash of the
    first training batch) catches data that changed behind an unchanged path, allowed only with a
    non-empty ``allow_changes``. Raises ``ValueError`` naming every difference, before anything is written."""
    if not _has_checkpoint(workdir):
        return
    allowed = set(_allowed(config))

    def changes(old: dict, new: dict, skip=()) -> list[str]:  # flat keys in both that differ, outside `skip`
        return [k for k in old if k in new and old[k] != new[k] and not any(k == s or k.startswith(s + ".") for s in skip)]

    def described(old: dict, new: dict, keys: list[str]) -> list[str]:
        return [f"{k} is {old[k]!r} there, {new[k]!r} here" for k in keys if k not in allowed]

    old_config = workdir / "config.json"
    old_cfg = _flat(json.loads(old_config.read_text())) if old_config.exists() else {}
    new_cfg = _flat(json.loads(files["config.json"]))
    config_changes = changes(old_cfg, new_cfg, RESUMABLE_KEYS)
    problems = []
    for name, text in files.items():
        path = workdir / name
        if not path.exists():
            continue
        old = path.read_text()
        if old == text:
            continue
        if name == DATA_FILE:
            if not allowed and not config_changes:  # else the differing keys explain (or allow) other batches
                problems.append(f"{DATA_FILE}: the training data differs (the first batch of its pipeline at this "
                                "seed and batch size), though no config key changed; if the data changed on "
                                "purpose, name its key in --config.allow_changes")
            continue
        if name == "config.json":
            diff = described(old_cfg, new_cfg, config_changes)
            if diff:
                problems.append(f"{name}: " + "; ".join(diff))
            continue
        if name.endswith(".json"):
            try:
                old_obj, new_obj = json.loads(old), json.loads(text)
            except json.JSONDecodeError:
                old_obj = new_obj = None
            if isinstance(old_obj, dict) and isinstance(new_obj, dict):
                old_obj, new_obj = _flat(old_obj), _flat(new_obj)
                differ = changes(old_obj, new_obj, MODEL_RESUMABLE_KEYS if name == "model.json" else ())
                if name == "model.json" and not differ and set(old_obj) == set(new_obj):
                    continue
                diff = described(old_obj, new_obj, differ) or ["its content"]
                problems.append(f"{name}: " + "; ".join(diff))
                continue
        problems.append(f"{name}: its content")
    if problems:
        raise ValueError(f"{workdir} holds a run of another configuration ({' | '.join(problems)}); resume it with "
                         "its own configuration, use another --workdir, or name config keys that may change in "
                         "--config.allow_changes (model and tokenizer files never may)")


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps done
    params: Any  # float32 parameter tree
    opt_state: Any
    rng: jax.Array  # uint32 (2,) key, split once per step
    nonfinite_step: jax.Array  # int32: first step whose loss or gradient was not finite, -1 if none


@dataclasses.dataclass(frozen=True)
class Task:
    """What an experiment gives ``train``.

    init: ``(rng, batch) -> params``.
    loss: ``(params, batch, rng) -> sums`` with at least ``loss`` (summed, not averaged) and
      ``weight`` (how many targets it sums over); see ``bioxlstm_jax.training.losses``.
    train_data: ``(local_batch_size, shard_index, shard_count) -> grain.IterDataset`` of numpy batch
      dicts (leading dim = local batch), endless, deterministic and checkpointable.
    eval_data: same signature, a finite iterable of batches (a fresh pass per evaluation), or None.
    model_config: the model's ``XLSTMConfig`` (None: none): the training plan reports its remat policy
      and mLSTM kernel path, and with ``model_file`` it is written to ``workdir/model.json``, so that
      ``bioxlstm_jax.inference.load_lm(workdir)`` can rebuild the language model.
    model_file: write ``model.json`` (False for models ``load_lm`` cannot rebuild, e.g. classifiers).
    files: more text files for the workdir, ``{name: content}`` (e.g. a tokenizer's ``vocab.json``).
    eval_loss: the loss for evaluation when it differs from ``loss`` (e.g. RC-conjoined); None = ``loss``.
    pretrained: parameters to start from instead of ``init``'s, as ``{name: subtree}`` of top-level
      parameter subtrees (e.g. ``{"backbone": ...}`` of a pretrained LM), on any device or on the host;
      None = all fresh. Each must have the structure and shapes of ``init``'s subtree. The trainer passes
      them to the compiled init as an argument replicated over the training mesh (an array closed over
      by a function compiled for a mesh must live on that mesh's devices).
    """

    init: Callable[[jax.Array, dict], Any]
    loss: Callable[[Any, dict, jax.Array], dict]
    train_data: Callable[[int, int, int], Any]
    eval_data: Callable[[int, int, int], Iterable[dict]] | None = None
    model_config: Any = None
    model_file: bool = True
    files: dict = dataclasses.field(default_factory=dict)
    eval_loss: Callable[[Any, dict, jax.Array], dict] | None = None
    pretrained: dict | None = None


def with_pretrained(params: dict, pretrained: dict | None) -> dict:
    """``params`` with its top-level subtrees replaced by those of ``pretrained`` (shapes checked; dtypes
    cast to the fresh ones)."""
    if not pretrained:
        return params
    for name, tree in pretrained.items():
        if name not in params:
            raise ValueError(f"pretrained parameters {name!r}: the model has no such part "
                             f"(it has {', '.join(sorted(params))})")
        if jax.tree.map(np.shape, tree) != jax.tree.map(np.shape, params[name]):
            raise ValueError(f"pretrained parameters {name!r} do not fit the model: their tree or shapes differ")
    return {**params, **{name: jax.tree.map(lambda x, f: jnp.asarray(x, f.dtype), tree, params[name])
                         for name, tree in pretrained.items()}}


def init_state(task: Task, optimizer: optax.GradientTransformation, seed: int, batch: dict,
               pretrained: dict | None = None) -> TrainState:
    """The step-0 state; ``pretrained``: ``task.pretrained`` as placed for the mesh (see ``Task``)."""
    init_rng, rng = jax.random.split(jax.random.PRNGKey(seed))
    params = with_pretrained(task.init(init_rng, batch), pretrained)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params), rng=rng,
                      nonfinite_step=jnp.full((), -1, jnp.int32))


def _tree_add(a, b):
    return jax.tree.map(jnp.add, a, b)


def make_train_step(task: Task, optimizer, schedule, grad_accum: int = 1):
    """``(state, batch) -> (state, metrics)``. The batch splits into ``grad_accum`` micro-batches
    (rows ``j::grad_accum``); gradients are summed over them and divided by the total target count,
    so the update equals one step on the whole batch. A non-finite loss or gradient leaves params and
    optimizer state unchanged and records the step in ``nonfinite_step``."""

    def step_fn(state: TrainState, batch):
        rng, step_rng = jax.random.split(state.rng)

        def grads_of(mb, k):
            def f(p):
                sums = task.loss(p, mb, jax.random.fold_in(step_rng, k))
                return sums["loss"], sums

            (_, sums), g = jax.value_and_grad(f, has_aux=True)(state.params)
            return g, sums

        if grad_accum == 1:
            grads, sums = grads_of(batch, 0)
        else:
            micro = jax.tree.map(
                lambda x: jnp.moveaxis(x.reshape(x.shape[0] // grad_accum, grad_accum, *x.shape[1:]), 1, 0), batch)
            zero = jax.eval_shape(grads_of, jax.tree.map(lambda x: x[0], micro), 0)
            zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero)

            def body(carry, xs):
                mb, k = xs
                return _tree_add(carry, grads_of(mb, k)), None

            (grads, sums), _ = jax.lax.scan(body, zero, (micro, jnp.arange(grad_accum)))
        grads = jax.tree.map(lambda g: g / jnp.maximum(sums["weight"], 1.0), grads)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(sums["loss"]) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        new_state = TrainState(
            step=state.step + 1, params=keep(params, state.params), opt_state=keep(opt_state, state.opt_state),
            rng=rng, nonfinite_step=jnp.where(~finite & (state.nonfinite_step < 0), state.step, state.nonfinite_step))
        metrics = {**sums, "grad_norm": grad_norm, "lr": schedule(state.step)}
        return new_state, metrics

    return step_fn


def make_eval_step(task: Task):
    loss = task.eval_loss or task.loss

    def eval_fn(params, batch):
        return loss(params, batch, jax.random.PRNGKey(0))

    return eval_fn


def training_plan(config, task: Task, mesh: Mesh, state, example: dict, tokens_per_step: int, compiled) -> dict:
    """What a run planned, before its first step: parameters, tokens per step, XLA's buffer plan per
    device of the compiled step (None where the backend gives none), the remat policy and the mLSTM
    path (``task.model_config``'s ``remat`` as ``nn.resolve_remat`` resolves it for the micro-batch and
    the mesh, ``kernel`` as ``ops.mlstm.chunkwise_path`` resolves it)."""
    from bioxlstm_jax.nn import resolve_remat
    from bioxlstm_jax.ops.mlstm import chunkwise_path

    plan = {"parameters": int(sum(np.size(x) for x in jax.tree.leaves(state.params))),
            "tokens_per_step": tokens_per_step, "devices": int(mesh.size),
            "mesh": {k: int(v) for k, v in mesh.shape.items()}, "planned_bytes_per_device": None}
    try:
        mem = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - a backend without a buffer plan
        mem = None
    if mem is not None:
        parts = {"temp": mem.temp_size_in_bytes, "arguments": mem.argument_size_in_bytes,
                 "outputs": mem.output_size_in_bytes, "aliased": mem.alias_size_in_bytes}
        plan["planned_bytes_per_device"] = int(parts["temp"] + parts["arguments"] + parts["outputs"] - parts["aliased"])
        plan["planned_bytes_parts"] = {k: int(v) for k, v in parts.items()}
    cfg = task.model_config
    if cfg is not None and "tokens" in example:
        rows, S = np.shape(example["tokens"])[:2]
        micro = rows * jax.process_count() // config.grad_accum
        plan["remat"] = resolve_remat(cfg, micro, S)
        plan["remat_setting"] = cfg.remat
        if not cfg.has_mlstm:
            plan["mlstm"] = "none (sLSTM blocks only)"
        elif cfg.form == "parallel":
            plan["mlstm"] = "parallel form (XLA)"
        else:
            path, why = chunkwise_path(cfg.kernel, cfg.dtype, cfg.mlstm_head_dim, cfg.mlstm_head_dim,
                                           min(cfg.chunk_size, S))
            names = {"pallas_mosaic": "Pallas kernels (Mosaic GPU)", "pallas_triton": "Pallas kernels (Triton)"}
            plan["mlstm"] = f"chunkwise, {names.get(path, 'XLA')}" + (f" ({why})" if why else "")
    return plan


def format_plan(plan: dict) -> list[str]:
    """``training_plan`` as the lines a run prints."""
    def gib(b):
        for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
            if b >= 2**shift:
                return f"{b / 2**shift:.2f} {unit}"
        return f"{b} B"

    mesh = " x ".join(f"{k} {v}" for k, v in plan["mesh"].items())
    lines = [f"plan: {plan['parameters']:,} parameters, {plan['tokens_per_step']:,} tokens per step, "
             f"{plan['devices']} device(s) ({mesh})"]
    planned = plan["planned_bytes_per_device"]
    if planned is None:
        lines.append("plan: memory per device: no buffer plan on this backend")
    else:
        parts = plan["planned_bytes_parts"]
        lines.append(f"plan: memory per device {gib(planned)} (XLA buffer plan: temp {gib(parts['temp'])}, "
                     f"arguments {gib(parts['arguments'])}, outputs {gib(parts['outputs'])}, "
                     f"aliased {gib(parts['aliased'])})")
    if "remat" in plan:
        how = " (auto)" if plan["remat_setting"] == "auto" else ""
        lines.append(f"plan: remat {plan['remat']}{how}; mLSTM {plan['mlstm']}")
    return lines


class _StopRequest:
    """SIGTERM / SIGINT set a flag; the loop saves a checkpoint and returns at the next step."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook worker): no handler
                pass
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _close(iterator) -> None:
    """Stops a grain iterator's prefetch threads now rather than at interpreter exit."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def _check_batch(config, mesh: Mesh, n_processes: int, example: dict) -> None:
    context = mesh.shape.get(CONTEXT_AXIS, 1)
    rows = mesh.size // context  # devices that hold different rows
    for key, x in example.items():
        if np.ndim(x) > 1 and np.shape(x)[1] % context:
            raise ValueError(f"--config.mesh.context={context}: the batch's {key!r} {np.shape(x)} must split into "
                             f"{context} equal parts along its sequence (second) dimension")
    for name, size, accum in (("batch_size", config.batch_size, config.grad_accum),
                              ("eval_batch_size", config.eval_batch_size, 1)):
        if size % (accum * rows) or size % n_processes:
            raise ValueError(f"--config.{name}={size}: expected a multiple of grad_accum x data x fsdp devices = "
                             f"{accum} x {rows}")


def train(config: ml_collections.ConfigDict, workdir: str, task: Task, mesh: Mesh | None = None) -> TrainState:
    """Trains ``task`` for ``config.steps`` optimizer steps in ``workdir``; returns the final state.

    Writes ``config.json``, ``data.json`` (``data_fingerprint``), ``metrics.jsonl`` (``train/loss``,
    ``train/perplexity``, ``train/accuracy``, ``train/grad_norm``, ``train/lr``, ``train/tokens_per_s``,
    ``eval/...``), ``tensorboard/``, ``curves.png``, ``checkpoints/`` and ``best/``, after checking the
    config, the data's first batches and the workdir (``check_config``, ``check_resume``; one run per
    workdir: ``io.workdir_lock``). Raises ``FloatingPointError`` when a step's loss or gradient is not
    finite (the last good checkpoint stays the latest).
    ``mesh`` (default: ``config.mesh`` over every device) may be any ``make_mesh`` mesh; with
    ``context > 1`` every sequence is split over that many devices (``bioxlstm_jax.nn.XLSTMBackbone``).
    """
    workdir = Path(workdir)
    check_config(config)
    mesh = mesh or make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.get("context", 1))
    n_proc, proc = jax.process_count(), jax.process_index()
    primary = proc == 0
    optimizer, schedule = make_optimizer(config.optimizer, config.steps)
    local_batch = config.batch_size // n_proc
    example_iter = iter(task.train_data(local_batch, proc, n_proc))
    example = next(example_iter)
    _close(example_iter)
    _check_batch(config, mesh, n_proc, example)
    abstract = jax.eval_shape(lambda b, p: init_state(task, optimizer, config.seed, b, p), example, task.pretrained)
    if task.eval_data is not None and config.eval_every and config.best_metric:
        eval_example = next(iter(task.eval_data(config.eval_batch_size // n_proc, proc, n_proc)), None)
        if eval_example is None:
            raise ValueError("the evaluation data holds no batch (set --config.eval_every=0 to train without it)")
        names = losses.summarize({k: 1.0 for k in jax.eval_shape(make_eval_step(task), abstract.params, eval_example)})
        if config.best_metric not in {f"eval/{k}" for k in names}:
            raise ValueError(f"--config.best_metric={config.best_metric!r}: expected an evaluation metric, one of "
                             f"{', '.join(sorted(f'eval/{k}' for k in names))}")
    files = {"config.json": config.to_json(indent=2), DATA_FILE: data_fingerprint(example, n_proc), **task.files}
    if task.model_config is not None and task.model_file:
        files["model.json"] = json.dumps(task.model_config.to_dict(), indent=2)

    with contextlib.ExitStack() as hold:
        if primary:
            hold.enter_context(workdir_lock(workdir))
        check_resume(workdir, config, files)
        hold.enter_context(jax.set_mesh(mesh))  # the model sees the mesh's context axis
        return _train(config, workdir, task, mesh, optimizer, schedule, example, abstract, files)


def _train(config, workdir: Path, task: Task, mesh: Mesh, optimizer, schedule, example, abstract, files) -> TrainState:
    """``train`` after every check, holding the workdir."""
    n_proc, proc = jax.process_count(), jax.process_index()
    primary = proc == 0
    local_batch = config.batch_size // n_proc
    state_sharding = param_shardings(abstract, mesh, config.mesh.fsdp_min_size)
    batch_shard = jax.tree.map(lambda x: batch_sharding(mesh, np.ndim(x)), example)
    train_step = jax.jit(make_train_step(task, optimizer, schedule, config.grad_accum),
                         in_shardings=(state_sharding, batch_shard), out_shardings=(state_sharding, None),
                         donate_argnums=0)
    eval_step = jax.jit(make_eval_step(task), in_shardings=(state_sharding.params, None))

    data_iter = iter(task.train_data(local_batch, proc, n_proc))
    ckpt = Checkpoints(workdir, keep=config.keep_checkpoints, async_save=config.async_checkpoint,
                       best_metric=config.best_metric or None, best_mode=config.get("best_mode", "min"))
    start = ckpt.latest_step()
    ckpt.drop_best_after(start)  # a best step of a killed run's future: the resumed run recomputes it
    if primary:
        for name, text in files.items():
            atomic_write(workdir / name, text)
    if start is None:
        pretrained = None if task.pretrained is None else jax.device_put(
            jax.device_get(task.pretrained), replicated(mesh))
        state = jax.jit(lambda b, p: init_state(task, optimizer, config.seed, b, p), out_shardings=state_sharding)(
            global_batch(example, mesh), pretrained)
        start = 0
    else:
        abstract_sharded = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                        abstract, state_sharding)
        state = ckpt.restore(start, abstract_sharded, data_iter)
    config_dict = json.loads(config.to_json())
    tokens_per_step = int(np.prod(np.shape(example["tokens"]))) * n_proc if "tokens" in example else 0
    try:  # compiled before the first step: the plan's buffer sizes (a model that cannot trace fails here)
        train_step = train_step.lower(state, global_batch(example, mesh)).compile()
    except BaseException:
        _close(data_iter)
        ckpt.close()
        raise
    plan = training_plan(config, task, mesh, state, example, tokens_per_step, train_step)
    if primary:
        print("\n".join(format_plan(plan)), flush=True)
    logger = MetricLogger(workdir, start_step=start, enabled=primary)
    logger.write_header(start, {"plan": plan})

    def check_finite(state):
        bad = int(state.nonfinite_step)
        if bad >= 0:
            last = ckpt.latest_step()
            raise FloatingPointError(
                f"non-finite loss or gradient at step {bad + 1}; stopped without saving. The last good "
                f"checkpoint is step {last} in {workdir / 'checkpoints'}" if last is not None else
                f"non-finite loss or gradient at step {bad + 1}; stopped before any checkpoint was saved")

    patience = config.get("patience", 0)
    sign = 1.0 if config.get("best_mode", "min") == "min" else -1.0
    early = {"best": float("inf"), "since": 0}  # since the last improvement, counted from this (re)start

    def evaluate(step, params):
        sums = None
        batches = itertools.islice(task.eval_data(config.eval_batch_size // n_proc, proc, n_proc), config.eval_steps)
        for b in batches:
            out = eval_step(params, global_batch(b, mesh))
            sums = out if sums is None else _tree_add(sums, out)
        if sums is None:
            raise ValueError("eval_data yielded no batches")
        metrics = {f"eval/{k}": v for k, v in losses.summarize(jax.device_get(sums)).items()}
        logger.write(step, metrics)
        ckpt.save_best(step, params, metrics)
        if config.best_metric:
            value = sign * float(metrics[config.best_metric])
            early["since"] = 0 if value < early["best"] else early["since"] + 1
            early["best"] = min(early["best"], value)
        if primary:
            plot_curves(workdir)
        return metrics

    bar = None
    if primary and config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
    acc, acc_steps, t_last = None, 0, time.perf_counter()
    try:
        with _StopRequest() as stop:
            for step in range(start + 1, config.steps + 1):
                state, metrics = train_step(state, global_batch(next(data_iter), mesh))
                acc = metrics if acc is None else _tree_add(acc, metrics)
                acc_steps += 1
                last = step == config.steps
                if step % config.log_every == 0 or last:
                    check_finite(state)
                    host = jax.device_get(acc)
                    now = time.perf_counter()
                    record = {f"train/{k}": v for k, v in losses.summarize(host).items()}
                    record["train/grad_norm"] = float(host["grad_norm"]) / acc_steps
                    record["train/lr"] = float(metrics["lr"])
                    record["train/tokens_per_s"] = tokens_per_step * acc_steps / (now - t_last)
                    logger.write(step, record)
                    if bar is not None:
                        bar.set_postfix(loss=f"{record['train/loss']:.4f}",
                                        tok_s=f"{record['train/tokens_per_s']:.3g}")
                    acc, acc_steps, t_last = None, 0, time.perf_counter()
                stop_early = False
                if task.eval_data is not None and config.eval_every and (step % config.eval_every == 0 or last):
                    evaluate(step, state.params)
                    stop_early = bool(patience) and early["since"] >= patience and not last
                if step % config.checkpoint_every == 0 or last or stop.signal or stop_early:
                    check_finite(state)
                    ckpt.save(step, state, data_iter, config_dict)
                if bar is not None:
                    bar.update(1)
                if stop_early:
                    if bar is not None:
                        bar.write(f"early stop at step {step}: {config.best_metric} has not improved in {patience} "
                                  "evaluations")
                    break
                if stop.signal:
                    if bar is not None:
                        bar.write(f"{stop.signal}: saved step {step} to {workdir / 'checkpoints'}; exiting")
                    break
    finally:
        _close(data_iter)
        ckpt.wait()
        ckpt.close()
        logger.close()
        if bar is not None:
            bar.close()
    if primary:
        plot_curves(workdir)
    return state
