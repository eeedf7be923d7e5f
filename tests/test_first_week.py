"""Issue 24, the first week in JupyterLab: displays that say what runs, sweep files that run the
study they describe, one PSNR per name, what the toy knows, warnings at the caller's line."""
from __future__ import annotations

import pytest

import wanlab
from wanlab import Params
from wanlab.backend import IdentityBackend


# --- 1. what you see is what runs ---------------------------------------------------------------------
def test_params_repr_shows_only_the_fields_set():
    p = Params(prompt="a red square", seed=1)
    assert repr(p) == "Params(prompt='a red square', seed=1)"
    assert "832" not in repr(p) and "steps" not in repr(p)
    back = eval(repr(p), {"Params": Params})
    assert back == p and back.explicit_fields() == p.explicit_fields()
    assert repr(p.replace(steps=30)) == "Params(prompt='a red square', seed=1, steps=30)"


def test_describe_marks_set_fields_and_defaults():
    lines = {line.split()[0]: line.split()[-1] for line in Params(prompt="a fox", seed=1, steps=9).describe().splitlines()}
    assert lines["seed"] == "set" and lines["steps"] == "set" and lines["prompt"] == "set"
    assert lines["width"] == "default" and lines["guidance_scale"] == "default"


def test_the_resolved_request_shows_what_the_toy_runs():
    toy = IdentityBackend(wanlab.identity("toy"))
    resolved = toy.params(Params(prompt="a red square", seed=1))
    assert repr(resolved) == ("Params(prompt='a red square', width=64, height=64, seed=1, steps=25, "
                              "guidance_scale=2.0, flow_shift=3.0, num_frames=17)")


def test_ipython_display_names_the_unset_fields():
    from IPython.lib.pretty import pretty

    shown = pretty(Params(prompt="a fox", seed=1))
    assert shown.startswith("Params(prompt='a fox', seed=1)") and "unset" in shown and "steps" in shown
    assert "pipe.params(p)" in shown
