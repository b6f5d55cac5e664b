"""The three Bio-xLSTM checkpoint layouts and the conversion CLI.

The official Bio-xLSTM repositories are not installable here, so their checkpoints are built from an
official ``xlstm`` model with the key names, prefixes, sLSTM CUDA layout and config files each repo
writes (read from their sources: Prot-xLSTM ``save_pretrained``, DNA-xLSTM Lightning + RCPS wrappers,
Chem-xLSTM ``model.pt`` + ``init_arguments.json``); the logits must equal the official model's.
"""

import dataclasses
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bioxlstm_jax.convert import load_converted, read_official_checkpoint
from bioxlstm_jax.convert.__main__ import main as convert_main
from bioxlstm_jax.data.dna import COMPLEMENT
from bioxlstm_jax.nn import XLSTMConfig
from tests.convert.test_official_lm import S, official_model
from tests.helpers import assert_close_scaled

try:  # PyTorch and the official xlstm package: the `torch` tests (deselected where the test extra has no PyTorch)
    import torch
except ModuleNotFoundError:
    pass


def _tokens(vocab=21):
    return torch.randint(0, vocab, (2, S), generator=torch.Generator().manual_seed(7))


def _logits(model):
    with torch.no_grad():
        return model(_tokens()).numpy()


def _cuda_layout(model, state_dict, prefix):
    """Rewrite the vanilla sLSTM tensors as the CUDA backend stores them (DNA-xLSTM checkpoints)."""
    for idx, block in enumerate(model.xlstm_block_stack.blocks):
        cell = getattr(block.xlstm, "slstm_cell", None)
        if cell is None:
            continue
        NH, DH = cell.config.num_heads, cell.config.head_dim
        key = f"{prefix}xlstm_block_stack.blocks.{idx}.xlstm.slstm_cell."
        state_dict[key + "_recurrent_kernel_"] = cell.recurrent_kernel.clone().reshape(NH, DH, 4 * DH)
        state_dict[key + "_bias_"] = cell.bias.clone().reshape(-1)


@pytest.mark.torch
def test_prot_xlstm_directory(tmp_path):
    model = official_model(11, slstm_at=[], num_blocks=2, D=64, m_heads=4, s_heads=4)
    cfg = dataclasses.asdict(model.config)
    cfg["mlstm_block"]["mlstm"].update(backend="chunkwise", chunk_size=8, return_last_state=False)
    cfg.update(position_embeddings="none", rope_base_frequency=500000, checkpoint_blocks=True)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    torch.save({"backbone." + k: v for k, v in model.state_dict().items()}, tmp_path / "pytorch_model.bin")
    config, params, _ = read_official_checkpoint(tmp_path)
    assert config.chunk_size == 8 and config.rope == "none"
    from bioxlstm_jax.nn import XLSTMLM

    assert_close_scaled(XLSTMLM(config).apply({"params": params}, _tokens().numpy()), _logits(model), 1e-5)
    cfg["position_embeddings"] = "rot_1d"
    from bioxlstm_jax.convert import config_from_prot_xlstm

    rot = config_from_prot_xlstm(cfg)
    assert (rot.rope, rot.rope_base) == ("inner", 500000.0)


@pytest.mark.torch
def test_dna_xlstm_lightning_checkpoint_with_cuda_slstm_layout(tmp_path):
    model = official_model(12, slstm_at=[1], num_blocks=3, D=64, m_heads=2, s_heads=4)
    sd = {"model.backbone." + k: v for k, v in model.state_dict().items()}
    _cuda_layout(model, sd, "model.backbone.")
    run = tmp_path / "run"
    (run / "checkpoints" / "test").mkdir(parents=True)
    torch.save({"state_dict": sd, "epoch": 3}, run / "checkpoints" / "test" / "loss.ckpt")
    model_config = dict(d_model=64, n_layer=3, vocab_size=21, max_length=S, m_num_heads=2, s_num_heads=4,
                        s_lstm_at=[1], s_proj_factor=1.3, m_bias=False, m_backend="chunkwise", m_chunk_size=8)
    (run / "model_config.json").write_text(json.dumps(model_config))
    out = tmp_path / "converted"
    assert convert_main([str(run / "checkpoints" / "test" / "loss.ckpt"), str(out)]) == 0
    module, params, _ = load_converted(out)
    assert not module.config.mlstm_round_up  # DNA-xLSTM floors the inner dim
    assert_close_scaled(module.apply({"params": params}, _tokens().numpy()), _logits(model), 1e-5)
    # The vanilla layout read as CUDA is caught by the logits, not silently accepted as equal:
    sd_vanilla = {"model.backbone." + k: v for k, v in model.state_dict().items()}
    torch.save({"state_dict": sd_vanilla}, tmp_path / "vanilla.ckpt")
    cfg_v, params_v, _ = read_official_checkpoint(tmp_path / "vanilla.ckpt", model_config=run / "model_config.json",
                                                  slstm_layout="vanilla")
    from bioxlstm_jax.nn import XLSTMLM

    assert_close_scaled(XLSTMLM(cfg_v).apply({"params": params_v}, _tokens().numpy()), _logits(model), 1e-5)


@pytest.mark.torch
def test_dna_xlstm_rcps_names_load_into_an_rcps_model(tmp_path):
    model = official_model(13, slstm_at="all", num_blocks=2, D=32, m_heads=2, s_heads=2, vocab=12)
    plain = dict(model.state_dict())
    _cuda_layout(model, plain, "")
    sd = {}
    for k, v in plain.items():
        k = k.replace("token_embedding.", "token_embedding.embedding.").replace("lm_head.", "lm_head.lm_head.")
        for wrapped in (".xlstm_norm.", ".xlstm.", ".ffn_norm.", ".ffn.", "post_blocks_norm."):
            if wrapped in k:
                k = k.replace(wrapped, wrapped + "submodule.", 1)
                break
        sd["model.backbone." + k] = v
    sd["model.backbone.token_embedding.complement_map"] = torch.tensor(COMPLEMENT)
    torch.save({"state_dict": sd}, tmp_path / "last.ckpt")
    mc = dict(d_model=32, n_layer=2, vocab_size=12, m_num_heads=2, s_num_heads=2, s_lstm_at=[0, 1],
              rcps=True, bidirectional=True, complement_map={str(i): c for i, c in enumerate(COMPLEMENT)})
    (tmp_path / "model_config.json").write_text(json.dumps(mc))
    cfg, params, _ = read_official_checkpoint(tmp_path / "last.ckpt")
    assert cfg.rcps and cfg.bidirectional == "sum" and cfg.complement_map == COMPLEMENT
    np.testing.assert_array_equal(params["backbone"]["token_embedding"]["embedding"],
                                  model.token_embedding.weight.detach().numpy())
    # the converted checkpoint is a fine-tuning backbone (experiments.dna_finetune --config.ckpt, PS)
    assert convert_main([str(tmp_path / "last.ckpt"), str(tmp_path / "converted")]) == 0
    from bioxlstm_jax.jobs.finetune import classifier
    from bioxlstm_jax.training.trainer import with_pretrained
    from experiments import dna_finetune

    c = dna_finetune.get_config()
    c.rc = "ps"
    clf, pretrained = classifier(c, str(tmp_path / "converted"), num_classes=3, length=40)
    tokens = jnp.asarray(np.random.default_rng(0).integers(7, 11, (2, 40)), jnp.int32)
    fresh = clf.init(jax.random.PRNGKey(1), tokens)["params"]
    loaded = with_pretrained(fresh, pretrained)
    chex.assert_trees_all_close(loaded["backbone"], params["backbone"])
    assert loaded["head"]["kernel"].shape == (32, 3) and clf.apply({"params": loaded}, tokens).shape == (2, 3)
    c.rc = "ph"
    with pytest.raises(ValueError, match="RCPS model"):
        classifier(c, str(tmp_path / "converted"), num_classes=3, length=40)


@pytest.mark.torch
def test_chem_xlstm_epoch_directory(tmp_path):
    model = official_model(14, slstm_at=[], num_blocks=2, D=64, m_heads=2, s_heads=4)
    run = tmp_path / "xLSTM-0.1M-ed64_hid64_l2_he2_123"
    (run / "epoch-002").mkdir(parents=True)
    torch.save({"model." + k: v for k, v in model.state_dict().items()}, run / "epoch-002" / "model.pt")
    tokens = (["<pad>", "<bos>", "<eos>"] + list("CNO()=c1n2Sl[]+-#F3@H4"))[:21]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    args = dict(model_dim=64, n_layers=2, n_heads=1, vocab_size=21, sequence_length=S, token2label=vocab)
    (run / "init_arguments.json").write_text(json.dumps(args))
    out = tmp_path / "converted"
    assert convert_main([str(run / "epoch-002"), str(out)]) == 2  # n_heads is required
    assert not out.exists()
    assert convert_main([str(run / "epoch-002"), str(out), "--n-heads", "2"]) == 0
    module, params, extras = load_converted(out)
    assert extras["vocab"] == vocab
    assert_close_scaled(module.apply({"params": params}, _tokens().numpy()), _logits(model), 1e-5)


def test_cli_errors(tmp_path, capsys):
    assert convert_main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    (tmp_path / "d").mkdir()
    assert convert_main([str(tmp_path / "d"), str(tmp_path / "out")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"vocab_size": 3,\n oops}')
    (tmp_path / "bad" / "pytorch_model.bin").write_bytes(b"")
    assert convert_main([str(tmp_path / "bad"), str(tmp_path / "out")]) == 2
    assert "line 2" in capsys.readouterr().err


@pytest.mark.torch
def test_a_config_that_does_not_fit_its_weights_is_refused_and_nothing_is_written(tmp_path, capsys):
    model = official_model(11, slstm_at=[], num_blocks=2, D=64, m_heads=4, s_heads=4)
    cfg = dataclasses.asdict(model.config)
    cfg["mlstm_block"]["mlstm"].update(backend="chunkwise", chunk_size=8, return_last_state=False)
    cfg.update(position_embeddings="none", vocab_size=12)  # the weights are of a 21-token model
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    torch.save({"backbone." + k: v for k, v in model.state_dict().items()}, tmp_path / "pytorch_model.bin")
    assert convert_main([str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: " in err and "the weights do not fit the model config" in err, err
    assert "is (21, 64) in the checkpoint, (12, 64) for the config" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.torch
def test_a_truncated_weights_file_is_named(tmp_path, capsys):
    model = official_model(11, slstm_at=[], num_blocks=1, D=64, m_heads=4, s_heads=4)
    cfg = dataclasses.asdict(model.config)
    cfg["mlstm_block"]["mlstm"].update(backend="chunkwise", chunk_size=8, return_last_state=False)
    cfg.update(position_embeddings="none")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    weights = tmp_path / "pytorch_model.bin"
    torch.save({"backbone." + k: v for k, v in model.state_dict().items()}, weights)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert convert_main([str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {weights}: not a readable PyTorch checkpoint (truncated or corrupt file?): ")
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_converted_config_round_trips():
    cfg = XLSTMConfig(vocab_size=12, num_blocks=3, slstm_at=(0, 2), rcps=True, complement_map=COMPLEMENT)
    assert XLSTMConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown"):
        XLSTMConfig.from_dict({"vocab_size": 3, "d_model": 4})
