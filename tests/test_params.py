"""Params: every API range boundary and one step past it, messages, API round trip."""
from __future__ import annotations

import re
from dataclasses import FrozenInstanceError

import pytest

from wanlab import LoRA, ParamError, Params

OK = dict(prompt="a red fox running through fresh snow")


def test_defaults_are_the_hosted_api_defaults():
    p = Params(**OK)
    assert (p.width, p.height, p.seed, p.steps, p.guidance_scale, p.flow_shift) == (832, 480, -1, 30, 5.0, 5.0)
    assert p.negative_prompt == "" and p.loras == () and p.num_frames == 81 and p.duration == 81 / 16


@pytest.mark.parametrize(
    "field, ok, bad",
    [
        ("steps", [1, 40], [0, 41]),
        ("seed", [-1, 0, 9_999_999_999], [-2, 10_000_000_000]),
        ("guidance_scale", [0, 0.0, 10, 10.0], [-0.001, 10.001]),
        ("flow_shift", [1, 1.0, 10.0], [0.999, 10.01]),
        ("num_frames", [1, 5, 81, 257], [0, 80, 82, 261]),
        ("width", [16, 832, 2048], [0, 8, 100, 2064]),
        ("height", [16, 480, 2048], [-16, 479, 2064]),
    ],
)
def test_range_boundaries(field, ok, bad):
    for value in ok:
        assert getattr(Params(**OK, **{field: value}), field) == value
    for value in bad:
        with pytest.raises(ParamError) as info:
            Params(**OK, **{field: value})
        message = str(info.value)
        assert message.startswith(f"{field}: must be") and repr(value) in message
        assert info.value.field == field and info.value.value == value


@pytest.mark.parametrize(
    "field, value, rule",
    [
        ("prompt", "", "a string of 1..2000 characters"),
        ("prompt", "x" * 2001, "a string of 1..2000 characters"),
        ("prompt", 5, "a string of 1..2000 characters"),
        ("negative_prompt", "x" * 2001, "a string of 0..2000 characters"),
        ("steps", 30.0, "an integer in 1..40"),
        ("steps", True, "an integer in 1..40"),
        ("seed", "7", "an integer in -1..9999999999"),
        ("guidance_scale", float("nan"), "a number in 0..10"),
        ("guidance_scale", "5", "a number in 0..10"),
        ("flow_shift", None, "a number in 1..10"),
        ("width", 832.0, "a multiple of 16 in 16..2048"),
        ("num_frames", 81.0, "4k+1 in 1..257"),
    ],
)
def test_every_field_names_field_rule_and_value(field, value, rule):
    with pytest.raises(ParamError, match="^" + re.escape(f"{field}: must be {rule}")) as info:
        Params(**{**OK, field: value})
    assert isinstance(info.value, ValueError)


def test_nothing_is_rounded():
    with pytest.raises(ParamError, match="num_frames"):
        Params(**OK, num_frames=80)  # diffusers would round this down to 77
    with pytest.raises(ParamError, match="width"):
        Params(**OK, width=840)


def test_prompt_limits_exact():
    assert len(Params(prompt="x" * 2000).prompt) == 2000
    assert Params(**OK, negative_prompt="x" * 2000).negative_prompt


def test_loras_forms_and_limits(tmp_path):
    p = Params(**OK, loras=[{"path": "a.safetensors", "scale": 0.5}, ("b.safetensors", 1), LoRA("c.safetensors")])
    assert p.loras == (LoRA("a.safetensors", 0.5), LoRA("b.safetensors", 1.0), LoRA("c.safetensors", 1.0))
    with pytest.raises(ParamError, match=r"^loras: must be at most 3 LoRAs"):
        Params(**OK, loras=[f"{i}.safetensors" for i in range(4)])
    with pytest.raises(ParamError, match=r"^loras.scale: must be a number in 0..4; got 4.5"):
        Params(**OK, loras=[("a.safetensors", 4.5)])
    with pytest.raises(ParamError, match=r"^loras.scale"):
        Params(**OK, loras=[("a.safetensors", -0.1)])
    with pytest.raises(ParamError, match=r"^loras.path: must be a non-empty file path"):
        Params(**OK, loras=[("", 1.0)])
    with pytest.raises(ParamError, match=r"^loras.weight: must be a field of a LoRA \(path, scale\); got 1"):
        Params(**OK, loras=[{"path": "a.safetensors", "weight": 1}])
    with pytest.raises(ParamError, match=r"^loras: must be a list"):
        Params(**OK, loras="a.safetensors")
    assert Params(**OK, loras=[tmp_path / "x.safetensors"]).loras[0].path == str(tmp_path / "x.safetensors")


def test_frozen_and_replace_validates():
    p = Params(**OK)
    with pytest.raises(FrozenInstanceError):
        p.steps = 3  # type: ignore[misc]
    q = p.replace(steps=10, seed=4)
    assert (q.steps, q.seed, p.steps) == (10, 4, 30)
    with pytest.raises(ParamError, match="^steps"):
        p.replace(steps=0)
    with pytest.raises(ParamError, match=r"^stepz: must be one of the Params fields \(prompt, "):
        p.replace(stepz=3)


def test_seed_minus_one_is_drawn_in_range_and_explicit_seed_kept():
    p = Params(**OK)
    seeds = {p.resolved().seed for _ in range(20)}
    assert all(0 <= s <= 9_999_999_999 for s in seeds) and len(seeds) > 1
    assert p.replace(seed=42).resolved().seed == 42


def test_api_round_trip_and_names():
    body = {
        "model_name": "wan2.1-t2v", "prompt": "a cat", "negative_prompt": "blur", "width": 480, "height": 832,
        "seed": 7, "steps": 25, "guidance_scale": 4.5, "flow_shift": 3.0,
        "loras": [{"path": "x.safetensors", "scale": 0.8}],
    }
    p = Params.from_api(body)
    assert (p.width, p.height, p.steps, p.loras[0].scale, p.num_frames) == (480, 832, 25, 0.8, 81)
    assert p.to_api() == body
    assert Params.from_api({"model_name": "wan2.1-t2v", "prompt": "x", "extra": {"webhook": {"url": "u"}}}).seed == -1


@pytest.mark.parametrize(
    "body, match",
    [
        ({"model_name": "wan2.2", "prompt": "x"}, r"^model_name: must be one of 'wan2.1-t2v', 'wan-t2v'"),
        ({"model_name": "wan2.1-t2v"}, r"^prompt: must be given"),
        ({"model_name": "wan2.1-t2v", "prompt": "x", "num_frames": 81}, r"^num_frames: must be a field of the Wan"),
        ({"model_name": "wan2.1-t2v", "prompt": "x", "cfg": 3}, r"^cfg: must be a field"),
        ({"model_name": "wan2.1-t2v", "prompt": "x", "width": 128, "height": 128},
         r"^width x height: must be one of the API sizes 832x480, 480x832, 1280x720, 720x1280; got '128x128'"),
        ({"model_name": "wan2.1-t2v", "prompt": "x", "width": 832, "height": 832}, r"^width x height"),
        ({"model_name": "wan2.1-t2v", "prompt": "x", "loras": {"path": "a"}}, r"^loras: must be a list"),
        ({"model_name": "wan2.1-t2v", "prompt": "x", "extra": 3}, r"^extra: must be a JSON object"),
        ({"prompt": "x", "extra": {"callback": 1}}, r"^extra.callback: must be a field of extra \(webhook\)"),
        ({"prompt": "x", "extra": {"webhook": {"url": ""}}}, r"^extra.webhook.url: must be a string of 1..2048"),
        ({"prompt": "x", "extra": {"webhook": {"url": "u", "test_mode": {"enabled": "yes"}}}},
         r"^extra.webhook.test_mode.enabled: must be True or False"),
        ({"prompt": "x", "extra": {"webhook": {"url": "u", "test_mode": {"return_task_status": "DONE"}}}},
         r"^extra.webhook.test_mode.return_task_status: must be one of TASK_STATUS_SUCCEED, TASK_STATUS_FAILED"),
        ({"prompt": "x", "fast_mode": 1}, r"^fast_mode: must be True or False; got 1"),
        ({"prompt": "x", "enable_safety_checker": "no"}, r"^enable_safety_checker: must be True or False"),
        ("not a dict", r"^body: must be a JSON object"),
    ],
)
def test_from_api_rejects(body, match):
    with pytest.raises(ParamError, match=match):
        Params.from_api(body)


def test_to_api_refuses_local_only_values():
    with pytest.raises(ParamError, match="^width x height"):
        Params(**OK, width=128, height=128).to_api()
    with pytest.raises(ParamError, match="^num_frames: must be 81 for the hosted API"):
        Params(**OK, num_frames=17).to_api()


def test_dict_round_trip():
    p = Params(**OK, loras=[("a.safetensors", 0.3)], seed=5)
    assert Params.from_dict(p.to_dict()) == p
    with pytest.raises(ParamError, match="^colour"):
        Params.from_dict({**p.to_dict(), "colour": "red"})


def test_the_published_body_as_the_current_docs_give_it():
    """model_name optional; a missing width or height means 832x480 (the docs say both are forced);
    the options outside the request are read by ApiOptions."""
    from wanlab.params import ApiOptions
    from wanlab.taskstatus import TaskStatus

    p = Params.from_api({"height": 1280, "width": 720, "seed": -1, "prompt": "a cat"})  # the docs' example
    assert (p.width, p.height, p.seed) == (720, 1280, -1)
    assert Params.from_api({"prompt": "a cat", "width": 480}).size == (832, 480)
    assert Params.from_api({"prompt": "a cat", "model_name": "wan-t2v"}).prompt == "a cat"
    assert set(Params.from_api({"prompt": "a cat"}).explicit_fields()) == set(Params.field_names())
    body = {"prompt": "a cat", "fast_mode": True, "enable_safety_checker": False,
            "extra": {"webhook": {"url": "https://hooks.example/x",
                                  "test_mode": {"enabled": True, "return_task_status": "TASK_STATUS_FAILED"}}}}
    options = ApiOptions.from_body(body)
    assert (options.fast_mode, options.enable_safety_checker, options.webhook_url, options.test_mode,
            options.test_status) == (True, False, "https://hooks.example/x", True, "TASK_STATUS_FAILED")
    assert options.test_status is TaskStatus.FAILED and ApiOptions().test_status is TaskStatus.SUCCEED
    local = Params.from_api({"prompt": "a cat", "width": 64, "height": 64, "num_frames": 17}, local=True)
    assert (local.width, local.num_frames) == (64, 17)


def test_fields_a_request_leaves_unset_come_from_the_models_native_settings():
    """One rule for Params and keywords: what the caller sets is kept, the rest is the model's."""
    from wanlab.backend import request

    native = {"width": 64, "height": 64, "num_frames": 17, "steps": 25, "guidance_scale": 2.0}
    by_params = request(native, Params(prompt="a fox", steps=10))
    by_fields = request(native, prompt="a fox", steps=10)
    assert by_params == by_fields and (by_params.width, by_params.steps, by_params.guidance_scale) == (64, 10, 2.0)
    explicit = request(native, Params(prompt="a fox", width=832, height=480))
    assert explicit.size == (832, 480) and explicit.num_frames == 17
    assert Params(prompt="a fox").replace(steps=3).explicit_fields() == {"prompt": "a fox", "steps": 3}
    assert Params(prompt="a fox") == Params(prompt="a fox", width=832)  # set or default: the same request
    with pytest.raises(ParamError, match="^prompt: must be given"):
        request(native, steps=3)
    with pytest.raises(ParamError, match="^stepz"):
        request(native, prompt="x", stepz=3)


def test_frames_is_the_javascript_sdks_name_for_the_frame_count():
    assert Params.from_api({"prompt": "a fox", "frames": 81}).num_frames == 81
    assert Params.from_api({"prompt": "a fox", "frames": 17, "width": 32, "height": 32}, local=True).num_frames == 17
    assert Params.from_api({"prompt": "a fox", "frames": 17, "num_frames": 17, "width": 32, "height": 32},
                           local=True).num_frames == 17
    with pytest.raises(ParamError, match=r"^frames: must be 81 under the API's rules .*--allow-local-sizes.*; got 17"):
        Params.from_api({"prompt": "a fox", "frames": 17})
    with pytest.raises(ParamError, match=r"^frames: must be equal to num_frames \(33\) when both are given.*; got 17"):
        Params.from_api({"prompt": "a fox", "frames": 17, "num_frames": 33}, local=True)
    with pytest.raises(ParamError, match=r"^frames: must be 4k\+1"):
        Params.from_api({"prompt": "a fox", "frames": "81"})


def test_negative_zero_is_zero_and_lone_surrogates_are_refused():
    from wanlab.keys import key_parts, run_key
    from wanlab.models.identity import identity as model_identity

    zero, negative = (Params(prompt="a fox", seed=1, guidance_scale=g) for g in (0.0, -0.0))
    assert str(negative.guidance_scale) == "0.0" and negative.to_dict() == zero.to_dict()
    identity = model_identity("tiny")
    assert run_key(key_parts(identity, zero, None, [])) == run_key(key_parts(identity, negative, None, []))
    for field in ("prompt", "negative_prompt"):
        with pytest.raises(ParamError, match=rf"^{field}: must be valid Unicode text \(no lone UTF-16 surrogate\)"):
            Params(**{"prompt": "a fox", field: "a fox \ud800"})
