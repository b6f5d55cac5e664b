"""xLSTM residual blocks and the block stack ``XLSTMBackbone`` (with DNA-xLSTM's bidirectional and
reverse-complement modes and rematerialisation). The heads are in ``nn.lm``, the recurrent state and
prefill in ``nn.state``.

Rematerialisation (``XLSTMConfig.remat``; ``"auto"`` is resolved per traced shape by ``resolve_remat``): with ``"block"`` or ``"block_save_dots"`` each run of
consecutive blocks of one type is a ``lax.scan`` over the blocks' parameters (stacked at apply time;
the parameter tree is unchanged) of a ``jax.checkpoint``-ed block, so the forward pass keeps only the
blocks' inputs. A Python loop of ``nn.remat`` blocks does not: XLA's CPU pipeline drops the
optimization barriers that keep common-subexpression elimination from merging the recomputation
with the forward pass, so its buffer plan is the same as without remat (measured). The scan's
backward loop is a separate computation, which nothing can merge back. A block whose passes are causal
and chunkwise goes further when S > ``remat_segment``: each pass is itself a scan over segments of
``remat_segment`` tokens of a checkpointed block, its state (mLSTM C, n, m and the conv's last inputs)
carried between segments, so the forward keeps each segment's input and entering state and the
backward holds one segment's activations at a time (prot_xlstm_26m at S = 16k: 103 KiB per token
planned for a training step, against 196 KiB with whole blocks and 2,020 KiB without remat).

Context parallelism: traced under a mesh with a ``context`` axis of size P > 1 (``jax.set_mesh``;
the trainer's ``config.mesh.context``), every causal mLSTM block pass splits the sequence into P equal
parts that run as a batch of B x P rows sharded over that axis, so each device holds and computes
S / P tokens (segments and remat apply within each part). The split is exact (``_context_parallel``):
each part's conv takes its first inputs from the previous part, and each part starts from its true
mLSTM state, combined from the earlier parts' ``ops.MLSTMSummary``. Everything else (embedding,
norms, feed-forwards, head, loss) is per token and runs sharded along the sequence as XLA partitions
it. sLSTM blocks, ``bidirectional="native"`` and non-causal convs cannot be split and raise.
"""

from __future__ import annotations

import functools
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from bioxlstm_jax import ops
from bioxlstm_jax.nn.components import LayerNorm
from bioxlstm_jax.nn.config import XLSTMConfig
from bioxlstm_jax.nn.layers import GatedFeedForward, MLSTMLayer, SLSTMLayer, small_init
from bioxlstm_jax.nn.rope import rope_angles
from bioxlstm_jax.nn.state import CONTEXT_AXIS, block_zero_state

__all__ = ["XLSTMBlock", "XLSTMBackbone", "reverse_complement", "CONTEXT_AXIS", "context_shards", "resolve_remat",
           "activation_bytes"]


def context_shards() -> int:
    """How many equal parts the sequence of a forward pass is split into: the size of the ``context``
    axis of the mesh set with ``jax.set_mesh`` (1 without one). See ``XLSTMBackbone``."""
    mesh = jax.sharding.get_abstract_mesh()
    return 1 if mesh.empty or CONTEXT_AXIS not in mesh.axis_names else mesh.shape[CONTEXT_AXIS]


def activation_bytes(cfg: XLSTMConfig, batch: int, seq_len: int) -> int:
    """Estimated bytes a training step keeps for its backward pass without remat, for ``batch`` rows
    of ``seq_len`` tokens (parameters and optimizer state not included). Calibrated on XLA's buffer
    plans of float32 steps (``benchmarks/remat_auto.py``): an mLSTM block keeps about 128 bytes per
    token and inner channel (prot_xlstm_26m, dna_xlstm_4m: 120-125), plus 16 bytes per token, head and
    attended position in the parallel form; an sLSTM block about 128 bytes per token and model channel
    plus 32 per feed-forward channel. Both passes of ``bidirectional="sum"`` and RCPS's doubled width
    count twice."""
    per_block = {"m": 128 * cfg.mlstm_inner_dim + (16 * cfg.mlstm_num_heads * seq_len if cfg.form == "parallel" else 0),
                 "s": 128 * cfg.embedding_dim + 32 * cfg.ffn_dim}
    factor = (2 if cfg.bidirectional == "sum" else 1) * (2 if cfg.rcps else 1)
    return factor * batch * seq_len * sum(per_block[t] for t in cfg.block_types)


def device_memory_bytes() -> int:
    """Memory of one local device: the allocator's limit on GPU / TPU; on CPU the host's physical
    memory shared by its local devices."""
    device = jax.local_devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // jax.local_device_count()


def resolve_remat(cfg: XLSTMConfig, batch: int, seq_len: int) -> str:
    """The remat policy a (batch, seq_len) forward pass runs with: ``cfg.remat``, or for ``"auto"``:
    ``"none"`` when ``activation_bytes`` of each device's share (batch and sequence split over the
    devices of the mesh set with ``jax.set_mesh``) fits in half of ``device_memory_bytes()``, else
    ``"block"`` (with ``remat_segment``)."""
    if cfg.remat != "auto":
        return cfg.remat
    mesh = jax.sharding.get_abstract_mesh()
    devices = 1 if mesh.empty else mesh.size
    per_device = activation_bytes(cfg, batch, seq_len) / devices
    return "none" if per_device <= device_memory_bytes() / 2 else "block"


def reverse_complement(tokens: jax.Array, complement_map) -> jax.Array:
    """Reverse complement of token ids: (B, S) int -> (B, S), flipped in time, each id complemented."""
    return jnp.flip(jnp.asarray(complement_map, jnp.int32)[tokens], axis=1)


def _flip_lc(x):
    """Flip time and channels: the reverse complement of an RC-equivariant feature half (B, S, C)."""
    return jnp.flip(x, axis=(1, 2))


class XLSTMBlock(nn.Module):
    """Pre-norm residual block: ``x + layer(LN(x))``, then ``x + FFN(LN(x))`` for sLSTM blocks.

    ``(x, rope, state, resets) -> (x, new_state or None)``.
    """

    config: XLSTMConfig
    block_idx: int
    return_state: bool = False

    @nn.compact
    def __call__(self, x, rope=None, state=None, resets=None, summarize: bool = False):
        cfg = self.config
        is_slstm = cfg.block_types[self.block_idx] == "s"
        layer_cls = SLSTMLayer if is_slstm else MLSTMLayer
        layer = layer_cls(cfg, self.block_idx, self.return_state, name="xlstm")
        y, new_state = layer(LayerNorm(name="xlstm_norm")(x), rope, state, resets, summarize=summarize)
        if summarize:  # the mLSTM's summary of x (context parallelism), no output
            return None, new_state
        x = x + y
        if is_slstm:
            x = x + GatedFeedForward(cfg, name="ffn")(LayerNorm(name="ffn_norm")(x))
        return x, new_state


class XLSTMBackbone(nn.Module):
    """Token embedding, blocks and post-blocks norm: tokens (B, S) -> hidden (B, S, D).

    With ``config.rcps`` the hidden is (B, S, 2D): ``[h, rc-branch]`` with the RC-equivariance
    ``hidden(rc(x)) == flip_{S,C}(hidden(x))`` (Caduceus' RCPS), built from weight-shared branches for
    every block type. Differences from DNA-xLSTM, on purpose: RCPS works for mLSTM blocks too, and the
    sLSTM head order is not reversed on the RC branch (the reference's ``is_rc_flipped`` breaks exact
    equivariance).
    """

    config: XLSTMConfig

    @nn.compact
    def __call__(self, tokens, positions=None, state=None, *, return_state: bool = False, resets=None):
        cfg = self.config
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"tokens must be int (B, S), got {tokens.dtype} {tokens.shape}")
        B, S = tokens.shape
        if (state is not None or return_state or resets is not None) and not cfg.causal:
            raise ValueError(
                "state passing, step decoding and resets need a causal model (bidirectional='none', rcps=False, "
                "causal convs)"
            )
        if state is not None and len(state) != cfg.num_blocks:
            raise ValueError(f"state must have one entry per block ({cfg.num_blocks}), got {len(state)}")
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32), (B, S))
        elif positions.shape != (B, S):
            raise ValueError(f"positions must be (B, S) = {(B, S)}, got {positions.shape}")
        if resets is not None:
            resets = jnp.asarray(resets, bool)
            if resets.shape != (B, S):
                raise ValueError(f"resets must be (B, S) = {(B, S)}, got {resets.shape}")

        dtype = jnp.dtype(cfg.dtype)
        embed = nn.Embed(cfg.vocab_size, cfg.embedding_dim, embedding_init=small_init(cfg.embedding_dim),
                         param_dtype=jnp.float32, name="token_embedding")
        x = embed(tokens).astype(dtype)
        if cfg.rcps:
            x = jnp.concatenate([x, _flip_lc(embed(reverse_complement(tokens, cfg.complement_map)).astype(dtype))], -1)

        rope = None
        if cfg.rope == "inner":
            rope = rope_angles(positions, cfg.mlstm_inner_dim, cfg.rope_base)
        elif cfg.rope == "head":
            rope = tuple(a[:, :, None, :] for a in rope_angles(positions, cfg.mlstm_head_dim, cfg.rope_base))

        shards = 1 if self.is_initializing() else context_shards()
        if shards > 1:
            _check_context_split(cfg, S, shards)
        remat = resolve_remat(cfg, B, S)
        if remat != "none" and not self.is_initializing():
            x, new_states = _remat_blocks(cfg, remat, self.variables["params"], x, rope, state, resets, return_state,
                                          shards)
        else:
            new_states = []
            for idx in range(cfg.num_blocks):
                block = XLSTMBlock(cfg, idx, return_state or shards > 1, name=f"block_{idx}")
                apply = block
                if shards > 1:
                    summarize = functools.partial(block, summarize=True)
                    apply = _context_parallel(cfg, block, summarize, summarize, shards, return_state)
                x, block_new = _directed(cfg, idx, apply, x, rope, None if state is None else state[idx], resets)
                new_states.append(block_new)
        if cfg.add_post_blocks_norm:
            norm = LayerNorm(name="post_blocks_norm")
            x = _rc_wrap(norm, x) if cfg.rcps else norm(x)
        return (x, tuple(new_states)) if return_state else x


def _directed(cfg, idx, block, x, rope, block_state, resets, reverse=None):
    """Block ``idx`` in the model's direction mode (and RC wrapping): ``(x, new block state or None)``.
    ``block(h, rope, state, resets)``. ``reverse`` (a traced bool) replaces ``idx % 2 == 0`` of the
    alternating mode inside a scan."""

    def directed(h):
        # The time-reversed passes see the same position ids, as DNA-xLSTM's fixed RoPE table.
        if cfg.bidirectional == "sum":
            fwd, _ = block(h, rope, None, None)
            bwd, _ = block(jnp.flip(h, 1), rope, None, None)
            return fwd + jnp.flip(bwd, 1), None
        if cfg.bidirectional == "alternating":
            if reverse is None:
                if idx % 2:
                    return block(h, rope, None, None)[0], None
                return jnp.flip(block(jnp.flip(h, 1), rope, None, None)[0], 1), None
            flip = lambda t: jnp.where(reverse, jnp.flip(t, 1), t)  # noqa: E731
            return flip(block(flip(h), rope, None, None)[0]), None
        return block(h, rope, block_state, resets)

    if cfg.rcps:
        return _rc_wrap(lambda h: directed(h)[0], x), None
    return directed(x)


_REMAT_POLICIES = {
    "block": jax.checkpoint_policies.nothing_saveable,
    "block_save_dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _segmentable(cfg: XLSTMConfig, kind: str) -> bool:
    """A pass of a block of this kind ("m" / "s") may run segment by segment, its state carried:
    causal convs and the chunkwise mLSTM (whose chunks a multiple-of-chunk segment keeps)."""
    if kind == "m":
        return cfg.form == "chunkwise" and cfg.mlstm_conv_causal
    return cfg.slstm_conv_causal


def _segmented(apply, zero, L, policy, return_state):
    """One causal pass ``apply(h, rope, state, resets) -> (y, new_state)`` (state always returned) as
    a scan over segments of L tokens of a checkpointed ``apply``, the state carried from segment to
    segment (``zero`` when none comes in), a last shorter segment after the scan: the forward keeps
    each segment's input and entering state, the backward recomputes one segment at a time."""
    step = jax.checkpoint(lambda st, xs: apply(*xs[:2], st, xs[2])[::-1], policy=policy, prevent_cse=False)

    def run(h, rope, state, resets):
        B, S = h.shape[:2]
        n = S // L

        def segments(t):
            return jnp.moveaxis(t[:, :n * L].reshape(B, n, L, *t.shape[2:]), 1, 0)

        tail = lambda t: t[:, n * L:]  # noqa: E731
        state, ys = jax.lax.scan(step, zero if state is None else state,
                                 jax.tree.map(segments, (h, rope, resets)))
        y = None if ys is None else jnp.moveaxis(ys, 0, 1).reshape(B, n * L, *ys.shape[3:])
        if n * L < S:
            state, y_tail = step(state, jax.tree.map(tail, (h, rope, resets)))
            y = None if y is None else jnp.concatenate([y, y_tail], axis=1)
        return y, state if return_state else None

    return run


def _remat_blocks(cfg, remat, params, x, rope, state, resets, return_state, shards=1):
    """The blocks as scans over each run of consecutive blocks of one type (see the module
    docstring): ``(x, per-block new states or Nones)``; ``shards > 1``: each pass split over the
    sequence (``_context_parallel``), segments within each part."""
    policy = _REMAT_POLICIES[remat]
    # "auto" may pick "block" for a chunk size remat_segment is no multiple of: the largest multiple below
    segment = cfg.remat_segment // cfg.chunk_size * cfg.chunk_size
    types = cfg.block_types
    B, S = x.shape[:2]
    new_states = []
    start = 0
    while start < cfg.num_blocks:
        end = start
        while end < cfg.num_blocks and types[end] == types[start]:
            end += 1
        run = range(start, end)
        segmented = 0 < segment < S // shards and _segmentable(cfg, types[start])
        # The block's parameters only (block_idx matters at initialisation alone).
        block = XLSTMBlock(cfg, start, return_state or segmented or shards > 1, parent=None)
        stack = lambda trees: jax.tree.map(lambda *a: jnp.stack(a), *trees)  # noqa: E731
        xs = {
            "params": stack([params[f"block_{i}"] for i in run]),
            "reverse": jnp.asarray([i % 2 == 0 for i in run]),
            "state": None if state is None else stack([state[i] for i in run]),
        }

        def body(h, xs, block=block, segmented=segmented, kind=types[start]):
            def apply(h, rope, st, rs, summarize=False):
                return block.apply({"params": xs["params"]}, h, rope, st, rs, summarize=summarize)

            summarize = functools.partial(apply, summarize=True)
            if segmented:
                out = _segmented(apply, block_zero_state(cfg, kind, B), segment, policy,
                                 return_state or shards > 1)
                if shards > 1:
                    apply = _context_parallel(cfg, out, _segmented(summarize, None, segment, policy, True),
                                              summarize, shards, return_state)
                else:
                    apply = out
            elif shards > 1:
                apply = _context_parallel(cfg, apply, summarize, summarize, shards, return_state)
            return _directed(cfg, None, apply, h, rope, xs["state"], resets, reverse=xs["reverse"])

        # Segmented blocks are checkpointed per segment; the others as a whole.
        x, run_states = jax.lax.scan(body if segmented else jax.checkpoint(body, policy=policy, prevent_cse=False),
                                     x, xs)
        for j in range(end - start):
            new_states.append(None if run_states is None else jax.tree.map(lambda a, j=j: a[j], run_states))
        start = end
    return x, new_states


def _check_context_split(cfg: XLSTMConfig, S: int, shards: int) -> None:
    """Raises ``ValueError`` when a model or a length cannot be split over ``shards`` context parts."""
    where = f"context parallelism (mesh axis '{CONTEXT_AXIS}' of size {shards})"
    if "s" in cfg.block_types:
        raise ValueError(f"{where}: sLSTM blocks (slstm_at={cfg.slstm_at}) are a nonlinear recurrence with no state "
                         "summary and cannot be split over the sequence; use a mesh without a context axis")
    if cfg.bidirectional == "native" or not cfg.mlstm_conv_causal:
        raise ValueError(f"{where} splits causal passes only: bidirectional='native' (a non-causal parallel mLSTM) "
                         "and non-causal convs (mlstm_conv_causal=False) are not supported; 'sum', 'alternating' "
                         "and rcps are")
    if S % shards or S // shards < cfg.conv1d_kernel_size - 1:
        raise ValueError(f"{where}: the sequence length {S} must be a multiple of {shards} with at least "
                         f"{cfg.conv1d_kernel_size - 1} tokens (the conv's window) per part")


def _fold_layout(batch: int) -> tuple[int, PartitionSpec]:
    """(D, spec) for a (B * shards, ...) array of parts: its rows are ordered (batch shard d, part p,
    row j of that shard), D batch shards of B / D rows, and ``spec`` shards them over the mesh's batch
    axes (when they divide B; else D = 1) and the context axis, so that each device holds exactly the
    parts it already holds of the (B, S) input: folding moves no data."""
    mesh = jax.sharding.get_abstract_mesh()
    batch_axes = tuple(a for a in mesh.axis_names if a != CONTEXT_AXIS and mesh.shape[a] > 1)
    D = math.prod(mesh.shape[a] for a in batch_axes)
    if batch % D:
        batch_axes, D = (), 1
    return D, PartitionSpec((*batch_axes, CONTEXT_AXIS))


def _context_parallel(cfg: XLSTMConfig, apply, summarize, summarize_halo, shards: int, return_state: bool):
    """One causal mLSTM block pass ``(h, rope, state, resets) -> (y, new_state or None)`` with the
    sequence split into ``shards`` equal parts that run as a batch of B * shards rows (sharded over the
    mesh's ``context`` axis, so each device holds and computes its part only), exact:

    1. the conv state entering each part: the conv inputs of the previous part's last KS-1 tokens
       (``summarize_halo`` on those tokens);
    2. each part's ``MLSTMSummary`` from the null state (``summarize``, one pass with no output);
    3. the mLSTM state entering each part: the summaries combined in sequence order, from the entering
       state (a gather of B x shards x NH x (DHQK x DHV + DHQK + 2) floats over the context axis);
    4. the pass itself (``apply``, state always returned) from those entering states.

    ``apply(h, rope, state, resets)`` and ``summarize`` take a (B * shards)-row batch of parts (they may be
    segmented); gradients flow through every step, so they are exact too. Costs one more pass over the
    block's input projections, conv and gates per part (the summary) than an unsplit pass."""
    KS, NH, DH, I = cfg.conv1d_kernel_size, cfg.mlstm_num_heads, cfg.mlstm_head_dim, cfg.mlstm_inner_dim

    def run(h, rope, state, resets):
        B, S = h.shape[:2]
        P, Sl = shards, S // shards
        D, spec = _fold_layout(B)

        def rows(t):  # (B, P, ...) -> (B * P, ...) in the fold's row order
            t = t.reshape(D, B // D, P, *t.shape[2:]).swapaxes(1, 2)
            return jax.lax.with_sharding_constraint(t.reshape(B * P, *t.shape[3:]), spec)

        def unrows(t):  # (B * P, ...) -> (B, P, ...)
            return t.reshape(D, P, B // D, *t.shape[1:]).swapaxes(1, 2).reshape(B, P, *t.shape[1:])

        def fold(t):  # (B, S, ...) -> (B * P, Sl, ...)
            return rows(t.reshape(B, P, Sl, *t.shape[2:]))

        def halo(t):  # (B, S, ...) -> (B * (P - 1), KS - 1, ...): the last KS-1 tokens of parts 0..P-2
            t = t.reshape(B, P, Sl, *t.shape[2:])[:, :-1, Sl - (KS - 1):]
            return t.reshape(B * (P - 1), KS - 1, *t.shape[3:])

        def null(rows):
            return {"mlstm": ops.MLSTMSummary.null(rows, NH, DH, DH), "conv": jnp.zeros((rows, KS - 1, I), h.dtype)}

        if state is None:
            state = block_zero_state(cfg, "m", B)
        conv_halo = jnp.zeros((B * (P - 1), 0, I), h.dtype)
        if KS > 1:
            _, st = summarize_halo(*(None if t is None else jax.tree.map(halo, t) for t in (h, rope)),
                                   null(B * (P - 1)), None if resets is None else halo(resets))
            conv_halo = st["conv"]
        conv = rows(jnp.concatenate([state["conv"][:, None].astype(h.dtype),
                                     conv_halo.reshape(B, P - 1, KS - 1, I)], 1))
        parts = tuple(None if t is None else jax.tree.map(fold, t) for t in (h, rope, resets))
        _, st = summarize(*parts[:2], {**null(B * P), "conv": conv}, parts[2])
        summaries = jax.tree.map(unrows, st["mlstm"])
        cell, entering = state["mlstm"], []
        for p in range(P):
            entering.append(cell)
            cell = ops.apply_summary(cell, jax.tree.map(lambda x, p=p: x[:, p], summaries))
        entering = jax.tree.map(lambda *xs: rows(jnp.stack(xs, 1)), *entering)
        y, st = apply(*parts[:2], {"mlstm": entering, "conv": conv}, parts[2])
        y = unrows(y).reshape(B, S, *y.shape[2:])
        if not return_state:
            return y, None
        return y, {"mlstm": cell, "conv": unrows(st["conv"])[:, -1]}

    return run


def _rc_wrap(fn, x):
    """Apply ``fn`` to the forward half and (RC-flipped) to the RC half of x (B, S, 2D)."""
    D = x.shape[-1] // 2
    return jnp.concatenate([fn(x[..., :D]), _flip_lc(fn(_flip_lc(x[..., D:])))], axis=-1)
