"""SMILES sampling: stop at [END], decoding, unfinished rows, out-of-vocabulary ids, batching."""

import jax
import numpy as np

from bioxlstm_jax.data.smiles import SmilesVocab
from bioxlstm_jax.inference import chem as chem_inference
from bioxlstm_jax.inference import generate_smiles
from bioxlstm_jax.nn import XLSTMLM, XLSTMConfig

VOCAB = SmilesVocab(["[PAD]", "[BEG]", "C", "O", "[END]", "N", "."])


def test_stop_logic_and_decoding(monkeypatch):
    C, O, END, N = (VOCAB.ids[t] for t in ("C", "O", "[END]", "N"))
    calls = []

    def fake_generate(model, params, prompt, *, max_new_tokens, rng, stop_token, **kw):
        calls.append((np.asarray(prompt).copy(), max_new_tokens, stop_token))
        tokens = np.array([[C, O, END, END], [C, C, C, N], [O, 7, END, END]])  # row 3 draws an unknown id 7
        lengths = np.array([3, 4, 3])
        return {"tokens": tokens[: len(prompt)], "lengths": lengths[: len(prompt)],
                "log_likelihood": -np.arange(len(prompt), dtype=float)}

    monkeypatch.setattr(chem_inference, "generate", fake_generate)
    model = XLSTMLM(XLSTMConfig(vocab_size=len(VOCAB), embedding_dim=16, context_length=5))
    out = generate_smiles(model, None, VOCAB, 3, jax.random.key(0), context="CO", batch_size=3, progress=False)
    prompt, max_new, stop = calls[0]
    assert prompt.tolist() == [[VOCAB.beg_id, C, O]] * 3 and max_new == 5 - 3 and stop == END
    assert out["smiles"] == ["CO", "CCCN", None]
    assert out["finished"].tolist() == [True, False, True]


def test_real_model_batches_and_pads_the_last_batch():
    model = XLSTMLM(XLSTMConfig(vocab_size=len(VOCAB), embedding_dim=16, mlstm_num_heads=1, context_length=12))
    params = model.init(jax.random.key(0), np.zeros((1, 4), np.int32))["params"]
    out = generate_smiles(model, params, VOCAB, 7, jax.random.key(1), batch_size=3, progress=False)
    assert len(out["smiles"]) == 7 and out["finished"].shape == (7,) and out["log_likelihood"].shape == (7,)
    for s in out["smiles"]:  # [BEG] / [PAD] drawn mid-molecule are dropped, as Chem-xLSTM does
        assert s is not None and set(s) <= set("CON.") and len(s) <= 11
    assert np.all(out["log_likelihood"] < 0)


def test_log_likelihood_is_per_candidate_and_padding_free():
    import jax.numpy as jnp

    from bioxlstm_jax.inference import smiles_log_likelihood

    model = XLSTMLM(XLSTMConfig(vocab_size=len(VOCAB), embedding_dim=16, mlstm_num_heads=1, context_length=32))
    params = model.init(jax.random.key(0), np.zeros((1, 4), np.int32))["params"]
    cands = ["CCO", "N", "CCCCCCNO"]
    batched = smiles_log_likelihood(model, params, VOCAB, cands, context="CO.", batch_size=2)
    for cand, score in zip(cands, batched):
        row = [VOCAB.beg_id] + VOCAB.encode("CO." + cand, add_special=False) + [VOCAB.end_id]
        logp = jax.nn.log_softmax(model.apply({"params": params}, jnp.asarray([row])))[0]
        start = 1 + len(VOCAB.encode("CO.", add_special=False))
        expected = np.mean([logp[t - 1, row[t]] for t in range(start, len(row))])
        np.testing.assert_allclose(score, expected, rtol=1e-5)
