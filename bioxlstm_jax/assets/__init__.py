"""Small real datasets shipped with the package for the experiments' defaults (see README.md here)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["asset_path"]

_ROOT = Path(__file__).resolve().parent


def asset_path(*parts: str) -> Path:
    """The path of a shipped asset, e.g. ``asset_path("protein", "clusters")``; raises if it is missing."""
    p = _ROOT.joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such asset (the package data was not installed?)")
    return p
