"""Experiment entry points: ``python -m experiments.<job>``. Thin: a config plus calls into the library."""
