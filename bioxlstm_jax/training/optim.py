"""AdamW with the Bio-xLSTM references' learning-rate schedules, clipping and weight-decay masks."""

from __future__ import annotations

import re

import jax
import optax

__all__ = ["make_schedule", "make_optimizer", "decay_mask"]

SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("adamw", "sgd")


def make_schedule(opt, steps: int) -> optax.Schedule:
    """Learning rate per optimizer step.

    ``opt.schedule``:
      * ``"constant"``: linear warmup from ``opt.warmup_init_lr`` to ``opt.lr`` over
        ``opt.warmup_steps``, then constant (Prot-xLSTM, HF ``constant_with_warmup``).
      * ``"cosine"``: the same warmup, then cosine decay to ``opt.min_lr`` at ``steps``
        (DNA-xLSTM's timm ``cosine_warmup``).
    """
    if opt.schedule not in SCHEDULES:
        raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {opt.schedule!r}")
    warmup = int(opt.warmup_steps)
    if opt.schedule == "constant":
        if warmup == 0:
            return optax.constant_schedule(opt.lr)
        return optax.join_schedules(
            [optax.linear_schedule(opt.warmup_init_lr, opt.lr, warmup), optax.constant_schedule(opt.lr)], [warmup])
    return optax.warmup_cosine_decay_schedule(opt.warmup_init_lr, opt.lr, warmup, max(steps, warmup + 1),
                                              end_value=opt.min_lr)


def decay_mask(params, exclude: str):
    """True where weight decay applies: every leaf whose '/'-joined path does not match ``exclude``.

    ``exclude=""`` decays everything (Prot-xLSTM); ``"bias|embedding"`` is DNA-xLSTM's grouping.
    """
    pattern = re.compile(exclude) if exclude else None

    def keep(path, _):
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        return pattern is None or pattern.search(name) is None

    return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(opt, steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Global-norm clipping (``opt.clip_norm``, 0 = off) then ``opt.name``: "adamw" (betas, eps,
    decoupled weight decay with ``decay_mask``) or "sgd" (plain, for exactness tests); returns
    (optimizer, schedule)."""
    if opt.name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name must be one of {OPTIMIZERS}, got {opt.name!r}")
    schedule = make_schedule(opt, steps)
    parts = [optax.clip_by_global_norm(opt.clip_norm)] if opt.clip_norm else []
    if opt.name == "sgd":
        return optax.chain(*parts, optax.sgd(schedule)), schedule
    parts.append(optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay,
                             mask=lambda p: decay_mask(p, opt.weight_decay_exclude)))
    return optax.chain(*parts), schedule
