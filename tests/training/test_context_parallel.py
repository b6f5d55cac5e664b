"""Context parallelism (mesh axis ``context``): a sequence split over devices trains exactly as unsplit."""

import re

import jax
import numpy as np
import pytest

from bioxlstm_jax.training import make_mesh, train
from bioxlstm_jax.training.logger import read_metrics
from tests.training import tiny_experiment
from tests.training.test_trainer import assert_params_close, params_of, tiny

pytestmark = pytest.mark.xdist_group("context_parallel")


def losses(workdir):
    return np.array([r["train/loss"] for r in read_metrics(workdir / "metrics.jsonl") if "train/loss" in r])


def test_context_split_training_equals_unsplit(tmp_path):
    # packed documents (resets inside and across the parts), 32 tokens split into 2, 4 and 8 parts
    c = tiny(steps=3, eval_every=0, max_len=7, **{"optimizer.name": "sgd", "optimizer.lr": 0.5})
    task = tiny_experiment.build_task(c)
    batch = next(iter(task.train_data(c.batch_size, 0, 1)))
    starts = np.argwhere(np.diff(batch["segment_ids"], axis=1) != 0)[:, 1] + 1
    assert {s % 4 for s in starts} == {0, 1, 2, 3}  # with 8 parts of 4: at a part's start and in its conv window
    one = train(c, tmp_path / "one", task, mesh=make_mesh(data=8))
    for name, mesh in (("c8", make_mesh(data=1, context=8)), ("c4", make_mesh(data=2, context=4)),
                       ("dfc", make_mesh(data=2, fsdp=2, context=2))):
        split = train(c, tmp_path / name, task, mesh=mesh)
        np.testing.assert_allclose(losses(tmp_path / name), losses(tmp_path / "one"), rtol=1e-5)
        assert_params_close(params_of(split), params_of(one), 1e-5)


def test_context_split_refuses_what_it_cannot_split(tmp_path):
    c = tiny(steps=1, eval_every=0)
    c.model.slstm_at = (0,)
    with pytest.raises(ValueError, match="sLSTM blocks .* cannot be split over the sequence"):
        train(c, tmp_path / "s", tiny_experiment.build_task(c), mesh=make_mesh(data=4, context=2))
    c = tiny(steps=1, eval_every=0, seq_len=36)
    with pytest.raises(ValueError, match=r"mesh.context=8: the batch's '\w+' \(8, 36\) must split into 8 equal parts"):
        train(c, tmp_path / "odd", tiny_experiment.build_task(c), mesh=make_mesh(data=1, context=8))
    with pytest.raises(ValueError, match="context=3 must divide the 8 devices"):
        make_mesh(context=3)
    assert jax.device_count() == 8


def collectives(seq_len: int) -> list[str]:
    """The collectives (op and operand shapes) of a compiled context=8 training step of the tiny model."""
    from bioxlstm_jax.training.mesh import batch_sharding, param_shardings
    from bioxlstm_jax.training.optim import make_optimizer
    from bioxlstm_jax.training.trainer import init_state, make_train_step

    c = tiny(seq_len=seq_len)
    task = tiny_experiment.build_task(c)
    mesh = make_mesh(data=1, context=8)
    batch = {k: jax.device_put(v, batch_sharding(mesh, np.ndim(v)))
             for k, v in next(iter(task.train_data(c.batch_size, 0, 1))).items()}
    optimizer, schedule = make_optimizer(c.optimizer, c.steps)
    with jax.set_mesh(mesh):
        abstract = jax.eval_shape(lambda b: init_state(task, optimizer, 0, b), batch)
        state = jax.jit(lambda b: init_state(task, optimizer, 0, b),
                        out_shardings=param_shardings(abstract, mesh))(batch)
        hlo = jax.jit(make_train_step(task, optimizer, schedule)).lower(state, batch).compile().as_text()
    op = re.compile(r" = (.*?) (all-gather|all-reduce|collective-permute|all-to-all|reduce-scatter)(?:-start)?\(")
    return sorted(f"{m.group(2)} {shape}" for m in map(op.search, hlo.splitlines()) if m  # tuples flattened
                  for shape in re.findall(r"\w+\[[\d,]*\]", m.group(1)))


def test_context_split_step_communication_does_not_grow_with_the_sequence():
    # what crosses devices is state summaries, conv halos and the parameter gradients' reduction:
    # doubling the sequence (8 rows of 8 x 7 -> 8 x 14 tokens) changes none of it. Caught before: the
    # fold's row order made an all-to-all of every activation, the loss's gather an all-gather of every id.
    short = collectives(56)
    assert any(c.startswith("collective-permute") for c in short)  # the summaries' hand-on
    assert short == collectives(112)
