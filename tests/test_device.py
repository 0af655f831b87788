"""mlip.device: the one device resolver, dtype map and seeding."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from mlip.device import DTYPES, dtype_name, resolve_device, resolve_dtype, seed_everything
from mlip.errors import ConfigError


def test_resolve_device_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is absent")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_resolve_device_cuda_missing_names_the_key(name):
    with pytest.raises(ConfigError) as err:
        resolve_device(name)
    assert str(err.value) == "config key 'device': cuda requested but no CUDA device is available"
    with pytest.raises(ConfigError, match="^--device: cuda requested"):
        resolve_device(name, key="--device")


def test_resolve_device_garbage():
    with pytest.raises(ConfigError, match=r"^--device: 'gpu0' is not a device"):
        resolve_device("gpu0", key="--device")


def test_dtype_map_round_trip():
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("float64") is torch.float64
    assert resolve_dtype(torch.float32) is torch.float32
    for name, dtype in DTYPES.items():
        assert dtype_name(dtype) == name
    with pytest.raises(ConfigError, match="^config key 'dtype': unknown dtype 'float16'"):
        resolve_dtype("float16")


def test_seed_everything_repeats_all_generators():
    draws = []
    for _ in range(2):
        seed_everything(123)
        draws.append((random.random(), float(np.random.rand()), float(torch.rand(()))))
    assert draws[0] == draws[1]
    seed_everything(124)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) != draws[0]
