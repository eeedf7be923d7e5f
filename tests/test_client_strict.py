"""The client's hosted-API mode against a ``wanlab serve`` in strict API mode (no ``--allow-local-sizes``):
what the client refuses before any call is what the server would refuse, and what it sends is the
published body the server takes. A task at the API's sizes (832x480, 81 frames) runs for minutes on the
tiny model on CPU, so the test checks its acceptance and the shape of its result, then kills the server.
"""
from __future__ import annotations

import json

import pytest

from wanlab.client import connect
from wanlab.errors import ParamError
from wanlab.server.testing import start_server
from wanlab.taskstatus import TaskStatus


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    srv = start_server(model="tiny", store=tmp_path_factory.mktemp("strict") / "store", keys=1,
                       allow_local_sizes=False)
    yield srv
    srv.kill()  # a task at the API's sizes would run for minutes; nothing here needs it to finish


def tasks(server) -> list[dict]:
    return [json.loads(f.read_text()) for f in (server.store / "tasks").glob("*.json")]


@pytest.mark.parametrize("kind", ["auto", "api"])
def test_what_the_api_cannot_take_is_refused_before_any_call(strict, kind):
    remote = connect(strict.base_url, strict.key, kind=kind)
    assert remote.identity.rules == "api" and remote.kind == ("wanlab" if kind == "auto" else "api")
    for fields, field in ((dict(width=32, height=32), "width x height"), (dict(num_frames=17), "num_frames")):
        with pytest.raises(ParamError) as info:
            remote.generate(prompt="refused here", seed=1, **fields)
        assert info.value.field == field
    with pytest.raises(ParamError, match="^accel: must be"):
        remote.submit(prompt="refused here", seed=1, accel="fbc")
    assert not [t for t in tasks(strict) if t["params"]["prompt"] == "refused here"]


def test_the_api_mode_sends_the_published_body_and_reads_the_published_result(strict):
    remote = connect(strict.base_url, strict.key, kind="api")
    task_id = remote.submit(prompt="the published body", seed=5, steps=1)
    result = remote.task_result(task_id)
    task = result["task"]
    assert task["task_id"] == task_id and task["task_type"] == "WAN_TXT_TO_VIDEO"
    assert task["status"] in (TaskStatus.QUEUED, TaskStatus.PROCESSING)
    assert isinstance(task["eta"], int) and isinstance(task["progress_percent"], int)
    assert result["images"] == [] and result["audios"] == [] and result["videos"] == []
    assert result["extra"]["seed"] == "5"
    (accepted,) = [t for t in tasks(strict) if t["task_id"] == task_id]
    assert accepted["params"]["width"] == 832 and accepted["params"]["height"] == 480
    assert accepted["params"]["num_frames"] == 81 and accepted["params"]["steps"] == 1
