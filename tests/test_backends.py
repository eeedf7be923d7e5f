"""One way to open the backend a user names (wanlab.backends): a model, --workers copies, --remote URL,
--ray [ADDRESS]; the command line's flags defined once, with one set of refusals for sweep, generate and serve."""
from __future__ import annotations

import argparse

import pytest

from tests.api_standin import StandinServer
from wanlab.backends import add_backend_args, check_choice, open_backend
from wanlab.cli import build_parser, main
from wanlab.client.remote import Remote
from wanlab.errors import ParamError
from wanlab.pipeline import Pipeline
from wanlab.workers import LocalWorkers

KEY = "sk-standin-0123456789abcdef"


@pytest.mark.parametrize("choice, message", [
    (dict(ray="", remote="http://x"),
     "ray: must be left out with remote (the service runs the tasks); got '(no address)'"),
    (dict(ray="head:6379", device="cpu"), "device: must be left out with ray (each worker runs on the GPU Ray gives "
                                          "it, or the CPU); got 'cpu'"),
    (dict(remote="http://x", dtype="float16"), "dtype: must be left out with remote (the service runs its own model"),
    (dict(remote="http://x", workers=2), "workers: must be used with ray; got 2"),
    (dict(workers=2, local_workers=False), "workers: must be used with ray; got 2"),
    (dict(workers=0), "workers: must be an integer in 1..64"),
])
def test_contradictory_choices_are_refused_naming_the_option(choice, message):
    with pytest.raises(ParamError) as caught:
        check_choice(**choice)
    assert str(caught.value).startswith(message)
    with pytest.raises(ParamError) as flagged:  # the command line's words: the same rule, the flag's name
        check_choice(**choice, flags=True)
    assert str(flagged.value).startswith("--" + message.replace("with ", "with --", 1))


def test_choices_that_agree_pass():
    check_choice(ray="", workers=3)
    check_choice(workers=2, device="cpu")
    check_choice(remote="http://x")
    check_choice()


def test_a_model_opens_as_a_pipeline_or_as_local_copies(tmp_path):
    one = open_backend("tiny", device="cpu")
    assert isinstance(one, Pipeline) and one.model_id == "tiny"
    with open_backend("tiny", workers=2, device="cpu") as two:
        assert isinstance(two, LocalWorkers) and len(two.pipes) == 2
        assert two.key_parts(two.params(prompt="a fox", seed=1)) == one.key_parts(one.params(prompt="a fox", seed=1))


def test_a_remote_opens_as_a_client_and_must_serve_the_model_named(monkeypatch):
    monkeypatch.delenv("WANLAB_API_KEY", raising=False)
    monkeypatch.delenv("NOVITA_API_KEY", raising=False)
    server = StandinServer(keys=(KEY,))
    try:
        with open_backend(remote=server.url, api_key=KEY, remote_kind="api") as remote:
            assert isinstance(remote, Remote) and remote.kind == "api"
            served = remote.identity.model_id
        with open_backend(served, remote=server.url, api_key=KEY, remote_kind="api") as same:
            assert same.identity.model_id == served
        with pytest.raises(ParamError, match=rf"^model \(in s.toml\): must be the model {server.url} serves "
                                             rf"\({served}\), or left out; got 'toy'"):
            open_backend("toy", remote=server.url, api_key=KEY, remote_kind="api", model_named_by="model (in s.toml)")
    finally:
        server.stop()


def test_sweep_generate_and_serve_share_the_flags():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for command in ("sweep", "serve"):
        flags = {s for a in sub[command]._actions for s in a.option_strings}
        assert {"--ray", "--workers"} <= flags, command
    assert {"--remote", "--api-key-file", "--remote-kind"} <= {s for a in sub["sweep"]._actions
                                                               for s in a.option_strings}
    generate = {s for a in sub["generate"]._actions for s in a.option_strings}
    assert "--remote" in generate and "--ray" not in generate
    args = parser.parse_args(["serve", "--model", "tiny", "--ray"])
    assert args.ray == "" and args.workers is None and args.local_workers is True
    args = parser.parse_args(["sweep", "s.toml", "--ray", "head:6379", "--workers", "4"])
    assert (args.ray, args.workers, args.local_workers) == ("head:6379", 4, False)
    own = argparse.ArgumentParser()
    add_backend_args(own, remote=False)
    assert own.parse_args(["--workers", "2"]).workers == 2


@pytest.mark.parametrize("argv, message", [
    (["--workers", "2"], "--workers: must be used with --ray; got 2"),
    (["--ray", "--remote", "http://127.0.0.1:9"], "--ray: must be left out with --remote (the service runs the tasks)"),
    (["--ray", "--device", "cpu"], "--device: must be left out with --ray (each worker runs on the GPU"),
    (["--remote", "http://127.0.0.1:9", "--dtype", "float16"], "--dtype: must be left out with --remote"),
])
def test_the_sweep_command_refuses_them_before_anything_runs(tmp_path, capsys, argv, message):
    from wanlab import Sweep

    sweep = Sweep(base={"prompt": "a fox", "steps": 2}, grid={"seed": [1]}, name="s", model="tiny")
    file = sweep.save(tmp_path / "s.toml")
    assert main(["sweep", str(file), "--dry-run", *argv]) == 2
    assert message in capsys.readouterr().err


def test_serve_refuses_a_device_with_ray_by_the_same_rule():
    from wanlab.server.config import ServerConfig

    with pytest.raises(ParamError, match=r"^device: must be left out with ray \(each worker runs on the GPU"):
        ServerConfig(model="tiny", ray="", device="cpu", no_auth=True)
