"""Bio-xLSTM in JAX: DNA-, Prot- and Chem-xLSTM on functional Flax modules over pure-JAX xLSTM ops."""

__version__ = "0.1.0"
