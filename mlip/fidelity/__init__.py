"""mlip.fidelity: multi-fidelity and multi-domain data tools (see docs/multifidelity.md).

- ``tea``: Total Energy Alignment (ICEA + AEC, MACE-Osaka24)
- ``shifts``: NEP89 per-element shifts (closed-form least squares on element counts)
- ``replay``: replay-set selection and new-head E0 re-estimation (MACE-MP-0 / MACE-MH-1)
- ``descriptors``: per-structure invariant descriptors (model-free radial, or a model's node features)
- ``select``: farthest-point sampling, NEP89 d_min filter, PCA plot
- ``labels``: label access, isolated-atom energies, atomic extxyz/JSON output
"""
