"""mlip: equivariant machine-learning interatomic potentials in the MACE family."""

__version__ = "0.1.0"
