"""Ready-made ``Task``s for the models of ``bioxlstm_jax.nn`` (batches as ``bioxlstm_jax.data`` builds them)."""

from __future__ import annotations

import jax.numpy as jnp

from bioxlstm_jax.training import losses
from bioxlstm_jax.training.trainer import Task

__all__ = ["causal_lm_task", "masked_lm_task", "classification_task"]


def causal_lm_task(model, train_data, eval_data=None, subsets=None, files=None) -> Task:
    """Next-token prediction with an ``XLSTMLM``. Batch: ``tokens``, optional ``positions``,
    ``segment_ids`` (packed documents: the mLSTM state resets at each new one and no target crosses
    a boundary) and ``loss_mask`` (e.g. FIM-only loss). ``subsets(batch) -> {name: (B, L - 1) bool
    over targets}`` adds per-subset metrics (e.g. ``eval/fim/perplexity``). ``files``: see ``Task``."""

    def init(rng, batch):
        return model.init(rng, jnp.asarray(batch["tokens"]))["params"]

    def loss(params, batch, rng):
        seg = batch.get("segment_ids")
        resets = losses.segment_resets(seg) if seg is not None and model.config.causal else None
        logits = model.apply({"params": params}, batch["tokens"], batch.get("positions"), resets=resets)
        return losses.causal_lm_sums(logits, batch["tokens"], batch.get("loss_mask"), seg,
                                     subsets(batch) if subsets else None)

    return Task(init=init, loss=loss, train_data=train_data, eval_data=eval_data, model_config=model.config,
                files=dict(files or {}))


def masked_lm_task(model, train_data, eval_data=None) -> Task:
    """Masked-LM with an ``XLSTMLM``: batch ``tokens`` (masked inputs), ``targets``, ``loss_mask``."""

    def init(rng, batch):
        return model.init(rng, jnp.asarray(batch["tokens"]))["params"]

    def loss(params, batch, rng):
        logits = model.apply({"params": params}, batch["tokens"], batch.get("positions"))
        return losses.masked_lm_sums(logits, batch["targets"], batch["loss_mask"])

    return Task(init=init, loss=loss, train_data=train_data, eval_data=eval_data, model_config=model.config)


def classification_task(model, train_data, eval_data=None, conjoin: bool = False, conjoin_eval: bool | None = None,
                        pretrained: dict | None = None) -> Task:
    """Sequence classification with an ``XLSTMClassifier``: batch ``tokens``, ``padding_mask``,
    ``labels`` and optional ``weight``. ``conjoin``: average the logits of both strands (PH) in
    training; ``conjoin_eval`` (default: ``conjoin``) in evaluation. ``pretrained``: parameter subtrees
    to start from, e.g. ``{"backbone": lm_params["backbone"]}`` (see ``Task``)."""

    def init(rng, batch):
        return model.init(rng, jnp.asarray(batch["tokens"]), jnp.asarray(batch["padding_mask"]))["params"]

    def sums(params, batch, join):
        logits = model.apply({"params": params}, batch["tokens"], batch["padding_mask"], conjoin=join)
        return losses.classification_sums(logits, batch["labels"], batch.get("weight"))

    return Task(init=init, loss=lambda p, b, rng: sums(p, b, conjoin), train_data=train_data, eval_data=eval_data,
                eval_loss=lambda p, b, rng: sums(p, b, conjoin if conjoin_eval is None else conjoin_eval),
                pretrained=pretrained, model_config=model.config, model_file=False)
