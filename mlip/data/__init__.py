"""mlip.data: files -> :class:`Configuration` -> graph dict -> batch dict (see docs/architecture.md).

Modules: ``configuration`` (the dataclass), ``io`` (reading/validating ASE-readable files),
``neighbors`` (vesin neighbour lists), ``graph`` (configuration -> graph), ``batch`` (collate, loaders),
``stats`` (E0s and training-set statistics), ``splits`` (train/valid/test), ``coverage`` (label coverage),
``summary`` (``mlip-data summary``). Importing this package does not import torch.
"""

from mlip.data.configuration import PROPERTIES, Configuration

__all__ = ["PROPERTIES", "Configuration"]
