"""Metrics to ``metrics.jsonl``, TensorBoard event files (tensorboardX, no TensorFlow) and a PNG."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from bioxlstm_jax.io import atomic_path, atomic_write

__all__ = ["MetricLogger", "read_metrics", "plot_curves"]


def read_metrics(path: str | os.PathLike, cut_last_line: bool = False) -> list[dict]:
    """The records of a ``metrics.jsonl`` file, in order. ``cut_last_line``: a last line without its
    newline that is not JSON (a write cut by a kill) is dropped rather than an error."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    records = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if cut_last_line and lineno == len(lines) and not text.endswith("\n"):
                break
            raise ValueError(f"{path}:{lineno}: expected one JSON object per line ({e.msg})") from None
    return records


class MetricLogger:
    """Writes one record per call: ``{"step": s, "<prefix>/<name>": value, ...}``.

    On resume from ``start_step``, records after that step (written before an interruption) are
    dropped, so the file reads as one uninterrupted run (with one ``write_header`` record, the plan, per
    start and restart). Only ``enabled`` loggers (process 0) write.
    """

    def __init__(self, workdir: str | os.PathLike, start_step: int = 0, enabled: bool = True):
        self.dir = Path(workdir)
        self.path = self.dir / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.path, cut_last_line=True) if r["step"] <= start_step]
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(str(self.dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in metrics.items():
            self._tb.add_scalar(k, float(v), int(step))
        self._tb.flush()

    def write_header(self, step: int, fields: dict) -> None:
        """A record that is not a metric (e.g. the run's plan, ``{"plan": {...}}``), at ``step``: the
        first record of a run and of each restart; not sent to TensorBoard."""
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": int(step), **fields}) + "\n")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def plot_curves(workdir: str | os.PathLike) -> Path | None:
    """Plots train/eval loss and the learning rate from ``metrics.jsonl`` to ``curves.png``."""
    workdir = Path(workdir)
    records = read_metrics(workdir / "metrics.jsonl")
    if not records:
        return None
    from matplotlib.figure import Figure  # no pyplot: never touches the caller's backend

    def series(key):
        pts = [(r["step"], r[key]) for r in records if key in r and math.isfinite(r[key])]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig = Figure(figsize=(10, 3.5))
    ax_loss, ax_lr = fig.subplots(1, 2)
    for key, style in (("train/loss", "-"), ("eval/loss", "o-")):
        x, y = series(key)
        if x:
            ax_loss.plot(x, y, style, label=key, markersize=3)
    ax_loss.set(xlabel="step", ylabel="cross-entropy (nats/token)", title="loss")
    ax_loss.legend()
    x, y = series("train/lr")
    ax_lr.plot(x, y)
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate")
    fig.tight_layout()
    out = workdir / "curves.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return out
