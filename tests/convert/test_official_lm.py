"""``from_torch_xlstm``: logits of the official ``xlstm.xLSTMLMModel`` (CPU, float32) reproduced to 1e-5.

Random configurations (mLSTM only, sLSTM only with the vanilla backend, mixed), ``reset_parameters()``
and then every weight perturbed (so zero-initialised gates, recurrent kernels and norm offsets matter).
The noise is scaled to keep pre-activations O(1): with noise of 0.2 on every gate weight, single
positions (where the normalizer nearly cancels) differed by ~1e-4 of the output scale.
"""

import pytest

from bioxlstm_jax.convert import from_torch_xlstm
from bioxlstm_jax.nn import XLSTMLM, zero_state
from tests.helpers import assert_close_scaled

try:  # PyTorch and the official xlstm package: the `torch` tests (deselected where the test extra has no PyTorch)
    import torch
    from xlstm import (
        FeedForwardConfig,
        mLSTMBlockConfig,
        mLSTMLayerConfig,
        sLSTMBlockConfig,
        sLSTMLayerConfig,
        xLSTMLMModel,
        xLSTMLMModelConfig,
    )
except ModuleNotFoundError:
    pass

pytestmark = pytest.mark.torch

S = 24


def official_model(seed, *, slstm_at, num_blocks, D, m_heads, s_heads, vocab=21, bias=False, proj=2.0, ff=1.3):
    torch.manual_seed(seed)
    cfg = xLSTMLMModelConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(num_heads=m_heads, proj_factor=proj)),
        slstm_block=sLSTMBlockConfig(
            slstm=sLSTMLayerConfig(backend="vanilla", num_heads=s_heads),
            feedforward=FeedForwardConfig(proj_factor=ff, act_fn="gelu"),
        ),
        context_length=S,
        num_blocks=num_blocks,
        embedding_dim=D,
        slstm_at=slstm_at,
        vocab_size=vocab,
        bias=bias,
    )
    model = xLSTMLMModel(cfg)
    model.reset_parameters()
    with torch.no_grad():  # O(1) pre-activations: weights get noise of scale 0.3 / sqrt(fan-in)
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p) / (p.shape[-1] ** 0.5 if p.ndim > 1 else 1.0))
    return model.eval()


CASES = {
    "mlstm": dict(slstm_at=[], num_blocks=2, D=64, m_heads=4, s_heads=4, bias=True),
    "slstm": dict(slstm_at="all", num_blocks=2, D=32, m_heads=4, s_heads=2, ff=1.7),
    "mixed": dict(slstm_at=[1], num_blocks=3, D=64, m_heads=2, s_heads=4, proj=1.5),
}


@pytest.mark.parametrize("form", ["parallel", "chunkwise"])
@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_official(case, form):
    model = official_model(0, **CASES[case])
    tokens = torch.randint(0, 21, (2, S), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(tokens).numpy()
    module, params = from_torch_xlstm(model, form=form, chunk_size=8)
    assert isinstance(module, XLSTMLM)
    actual = module.apply({"params": params}, tokens.numpy())
    assert actual.shape == (2, S, 21)
    assert_close_scaled(actual, expected, 1e-5, f"{case}/{form}")


@pytest.mark.parametrize("case", ["mlstm", "mixed"])
def test_step_matches_official_step(case):
    """Token-by-token decoding: our ``step`` against the official ``xLSTMLMModel.step``."""
    model = official_model(2, **CASES[case])
    tokens = torch.randint(0, 21, (2, 10), generator=torch.Generator().manual_seed(3))
    module, params = from_torch_xlstm(model)
    state_t, state_j = None, zero_state(module.config, 2)
    for t in range(tokens.shape[1]):
        with torch.no_grad():
            ref, state_t = model.step(tokens[:, t : t + 1].clone(), state_t)
        out, state_j = module.apply({"params": params}, tokens[:, t].numpy(), state_j, method=XLSTMLM.step)
        assert_close_scaled(out, ref[:, 0].numpy(), 1e-5, f"step {t}")


def test_unused_or_missing_weights_are_errors():
    model = official_model(0, **CASES["mlstm"])
    module, _ = from_torch_xlstm(model)
    from bioxlstm_jax.convert import params_from_state_dict

    sd = dict(model.state_dict())
    sd["xlstm_block_stack.blocks.0.xlstm.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="not used"):
        params_from_state_dict(sd, module.config)
    sd = dict(model.state_dict())
    del sd["lm_head.weight"]
    with pytest.raises(ValueError, match="lm_head.weight"):
        params_from_state_dict(sd, module.config)
