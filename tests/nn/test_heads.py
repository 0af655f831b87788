"""mlip.nn.heads: the one head-choosing rule (select_head for a run, frame_head per frame, model_heads)."""

from __future__ import annotations

import pytest

from mlip.errors import ConfigError
from mlip.nn.heads import frame_head, model_heads, select_head


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
    with pytest.raises(ConfigError, match=r"^head: the model has several heads \['a', 'b'\] and no default_head; "
                                          r"choose one with head$"):
        select_head(["a", "b"], None)


def test_frame_head_rule():
    heads = ["pt_head", "acac"]  # a fine-tuned model: the pretrained head first, default_head "acac"
    assert frame_head(heads, None, default="acac") == "acac"  # no head named: the model's default
    assert frame_head(heads, "Default", default="acac") == "acac"  # read_configurations' name for "none"
    assert frame_head(heads, "pt_head", default="acac") == "pt_head"  # the frame's own head, when the model has it
    assert frame_head(heads, "pt_head", head="acac", default="acac") == "acac"  # an explicit head wins
    assert frame_head(["Default", "b"], "Default", default="b") == "Default"  # a real head named Default is kept
    with pytest.raises(ConfigError, match=r"^data.xyz: frame 3: head 'mp' is not one of the model's heads "
                                          r"\['pt_head', 'acac'\]; pass --head$"):
        frame_head(heads, "mp", default="acac", where="data.xyz: frame 3")
    with pytest.raises(ConfigError, match=r"^--head: unknown head 'x'"):
        frame_head(heads, None, head="x", default="acac")
    with pytest.raises(ConfigError, match=r"^structure 0: --head: the model has several heads"):
        frame_head(heads, None, where="structure 0")


def test_model_heads():
    class Bare:
        pass

    class FineTuned:
        heads = ["pt_head", "acac"]
        default_head = "acac"

    assert model_heads(Bare()) == (["Default"], None)
    assert model_heads(FineTuned()) == (["pt_head", "acac"], "acac")
