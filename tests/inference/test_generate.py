"""Generation: prefill + O(1) steps equals greedy decoding by repeated full forwards; sampling filters;
the FIM position rule; inpainting prompts; loading checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bioxlstm_jax import presets
from bioxlstm_jax.data import protein as P
from bioxlstm_jax.inference import generate, sample_logits
from bioxlstm_jax.inference.protein import context_prompt, generate_proteins, inpainting_prompt
from bioxlstm_jax.nn import XLSTMLM


@pytest.fixture(scope="module")
def lm():
    cfg = presets.get("prot_xlstm_26m", embedding_dim=32, num_blocks=2, chunk_size=8)
    model = XLSTMLM(cfg)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
    # sharpen the head so greedy choices are well separated from ties
    params = {**params, "lm_head": {"kernel": params["lm_head"]["kernel"] * 20.0}}
    return model, params


def greedy_by_full_forwards(model, params, prompt, positions, n, token_positions):
    """Greedy decoding by a full forward of the whole sequence per token (parallel form, jitted)."""
    full = XLSTMLM(model.config.replace(form="parallel"))
    forward = jax.jit(lambda t, p: full.apply({"params": params}, t, p))
    toks, pos = list(prompt), list(positions)
    repeat = token_positions[toks[-1]] >= 0
    out = []
    for _ in range(n):
        logits = forward(jnp.asarray([toks]), jnp.asarray([pos]))
        t = int(jnp.argmax(logits[0, -1]))
        p = token_positions[t] if token_positions[t] >= 0 else (pos[-1] if repeat else pos[-1] + 1)
        repeat = token_positions[t] >= 0
        toks.append(t)
        pos.append(int(p))
        out.append(t)
    return out


def test_prefill_and_steps_equal_greedy_full_forwards(lm):
    model, params = lm
    prompt, positions = context_prompt(["MKVLAAGIT", "MKVLSAGLTE", "MRVLAG"])
    tp = np.full(len(P.VOCAB), -1, np.int32)
    tp[P.MASK_IDS[1]] = 4  # any <mask-2> jumps to position 4 and the next token repeats it
    want = greedy_by_full_forwards(model, params, prompt, positions, 12, tp)
    got = generate(model, params, prompt[None], positions[None], max_new_tokens=12, rng=jax.random.PRNGKey(0),
                   top_k=1, token_positions=tp, segment_length=7)  # prefill in 4 segments
    assert got["tokens"][0].tolist() == want
    assert got["log_likelihood"][0] == pytest.approx(got["logp"][0].sum())
    # logp = the model's log-probability of each chosen token (checked for the first one)
    first = jax.nn.log_softmax(model.apply({"params": params}, jnp.asarray(prompt[None]),
                                           jnp.asarray(positions[None]))[0, -1])[want[0]]
    assert got["logp"][0, 0] == pytest.approx(float(first), abs=1e-5)


def test_generation_stops_at_the_stop_token(lm):
    model, params = lm
    prompt, positions = context_prompt(["MKVLAAGIT"])
    free = generate(model, params, prompt[None], positions[None], max_new_tokens=10, rng=jax.random.PRNGKey(0),
                    top_k=1)["tokens"][0]
    stop = int(free[3])
    res = generate(model, params, np.stack([prompt] * 2), np.stack([positions] * 2), max_new_tokens=10,
                   rng=jax.random.PRNGKey(0), top_k=1, stop_token=stop)
    first = int(np.flatnonzero(free == stop)[0])
    assert res["lengths"].tolist() == [first + 1] * 2
    assert (res["tokens"][:, first:] == stop).all() and (res["logp"][:, first + 1:] == 0).all()


def test_sample_logits_filters():
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    draw = lambda **kw: np.asarray(jax.vmap(lambda k: sample_logits(k, logits, **kw)[0])(keys))  # noqa: E731
    assert set(draw(top_k=2).tolist()) == {0, 1}
    assert set(draw(top_p=0.7).tolist()) == {0, 1}  # 0.5 + 0.3 reaches 0.7; 0.15 and 0.05 are dropped
    assert set(draw(top_p=0.9).tolist()) == {0, 1, 2}
    assert set(draw(top_k=1).tolist()) == {0}
    freq = np.bincount(draw(), minlength=4) / 4000
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    cold = np.bincount(draw(temperature=0.5), minlength=4) / 4000
    p = np.array([0.5, 0.3, 0.15, 0.05]) ** 2
    np.testing.assert_allclose(cold, p / p.sum(), atol=0.03)


def test_inpainting_prompt_and_reordering(lm):
    model, params = lm
    target = "MKVLAAGITE"
    toks, pos, tp = inpainting_prompt(["MKVLSAGLTE"], target, [(2, 4), (6, 8)])  # regenerate "VL" and "GI"
    m1, m2 = P.MASK_IDS[:2]
    tail = toks[11:]  # after the context protein (<cls> + 10 residues)
    assert P.decode(tail) == "<cls>MK<mask-1>AA<mask-2>TE<eos><mask-1>"
    assert pos[11:].tolist() == [0, 1, 2, 3, 5, 6, 7, 9, 10, 0, 3]
    assert tp[m1] == 3 and tp[m2] == 7 and (np.delete(tp, [m1, m2]) == -1).all()
    samples = generate_proteins(model, params, toks, pos, num_samples=3, rng=jax.random.PRNGKey(1),
                                max_new_tokens=6, batch_size=2, token_positions=tp)
    assert len(samples) == 3
    for s in samples:
        assert s["n_tokens"] <= 6 and np.isfinite(s["log_likelihood"])
        assert s["sequence"].startswith("MK")  # the kept prefix is in place
