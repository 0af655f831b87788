"""mlip.nn.heads.select_head: the one head-choosing rule (calculator, engines, fine-tuning)."""

from __future__ import annotations

import pytest

from mlip.errors import ConfigError
from mlip.nn.heads import select_head


def test_rule_order():
    assert select_head(["a", "b"], "b") == 1
    assert select_head(["a", "b"], "a", default="b") == 0  # an explicit head wins
    assert select_head(["a", "b"], None, default="b") == 1  # then the file's default head
    assert select_head(["a", "Default"], None, default="gone") == 1  # then "Default"
    assert select_head(["only"], None) == 0  # or the only head


def test_errors_name_the_key_and_owner():
    with pytest.raises(ConfigError, match=r"^config key 'finetune.pretrained_head': unknown head 'x'; "
                                          r"the pretrained model's heads are \['a', 'b'\]$"):
        select_head(["a", "b"], "x", key="config key 'finetune.pretrained_head'", owner="the pretrained model")
    with pytest.raises(ConfigError, match=r"^head: the model has several heads \['a', 'b'\]; choose one$"):
        select_head(["a", "b"], None)
