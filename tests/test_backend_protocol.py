"""The backend protocol is whole: every backend class offers each of its methods with the protocol's
signature, callers need no hasattr, and what backends share (requests, keys, the LoRA policy, ``with``)
comes from one base."""
from __future__ import annotations

import inspect

import pytest

from tests.backends import FakeBackend
from wanlab import Params
from wanlab.backend import Backend, BackendBase, Closing, IdentityBackend, Job, is_backend, step_progress
from wanlab.client.remote import Remote
from wanlab.client.service import ServiceInfo
from wanlab.client.transport import Transport
from wanlab.errors import LoRAError, ParamError
from wanlab.lora import SourcePolicy
from wanlab.params import LoRA
from wanlab.pipeline import Pipeline
from wanlab.ray.raypool import RayPool
from wanlab.workers import LocalWorkers

BACKENDS = [Pipeline, Remote, RayPool, LocalWorkers, FakeBackend]
METHODS = sorted(name for name, value in vars(Backend).items()
                 if inspect.isfunction(value) and not name.startswith("_"))


def shape(fn):
    """Each parameter's name, kind and default (annotations are strings written in each module's words)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def remote(identity) -> Remote:
    """A Remote of a wanlab server that is never called (nothing here sends a request)."""
    return Remote(Transport("http://127.0.0.1:9", None), ServiceInfo("wanlab", identity))


def test_the_protocol_declares_what_callers_use():
    assert METHODS == ["cancel", "close", "generate", "key_parts", "params", "set_lora_policy", "start", "submit",
                       "task_result", "wait"]


@pytest.mark.parametrize("cls", BACKENDS, ids=lambda c: c.__name__)
def test_every_backend_class_offers_each_method_with_the_protocol_signature(cls):
    assert issubclass(cls, BackendBase) and issubclass(cls, Closing)
    for name in METHODS:
        declared, offered = shape(getattr(Backend, name)), shape(getattr(cls, name))
        if name == "generate":  # one signature shared by every backend
            assert sorted(offered, key=str) == sorted(declared, key=str), cls
            continue
        # the protocol's parameters, in order; a backend may add keyword-only ones with defaults
        positional = [p for p in offered if p[1] != inspect.Parameter.KEYWORD_ONLY]
        assert positional == [p for p in declared if p[1] != inspect.Parameter.KEYWORD_ONLY], (cls, name)
        extra = set(offered) - set(declared)
        assert all(kind == inspect.Parameter.KEYWORD_ONLY and default is not inspect.Parameter.empty
                   for _, kind, default in extra), (cls, name, extra)


def test_backends_are_backends_and_keyers_are_not(pipe):
    fake = FakeBackend()
    for backend in (pipe, fake, remote(fake.identity), LocalWorkers([pipe])):
        assert is_backend(backend) and isinstance(backend, Backend), backend
    assert not is_backend(IdentityBackend(fake.identity)) and not is_backend("tiny")

    class NoClose:
        identity, max_in_flight, records_probes = fake.identity, 1, True
        params, key_parts, start, generate = fake.params, fake.key_parts, fake.start, fake.generate
        submit, task_result, wait, cancel, set_lora_policy = (fake.submit, fake.task_result, fake.wait, fake.cancel,
                                                              fake.set_lora_policy)

    assert not is_backend(NoClose())
    assert not remote(fake.identity).records_probes and pipe.records_probes and fake.records_probes


def test_a_backend_without_start_or_close_cannot_be_made():
    class Half(BackendBase):
        def close(self) -> None:
            pass

    with pytest.raises(TypeError, match="start"):
        Half()


def test_requests_and_keys_come_from_the_identity_alike():
    fake = FakeBackend()
    keyer, service = IdentityBackend(fake.identity), remote(fake.identity)
    p = Params(prompt="a square", seed=4, steps=3)
    assert fake.params(p) == keyer.params(p) == service.params(p)
    assert fake.params(p).width == 32  # the model's native size fills what the request leaves out
    assert fake.key_parts(p) == keyer.key_parts(p) == service.key_parts(p)
    with pytest.raises(ParamError, match="accel: must be exact"):  # the service runs its own setting only
        service.key_parts(p, "fbc")
    assert keyer.key_parts(p, "fbc")["accel"] != keyer.key_parts(p)["accel"]


def test_one_lora_policy_method_on_every_backend(pipe, tmp_path):
    outside = tmp_path / "elsewhere" / "style.safetensors"
    outside.parent.mkdir()
    outside.write_bytes(b"not read: the policy refuses it first")
    allowed = SourcePolicy(local_roots=(str(tmp_path / "loras"),), urls=False)
    p = Params(prompt="a square", seed=1, loras=[LoRA(str(outside))])
    workers = LocalWorkers([pipe])
    service = remote(pipe.identity)
    fake = FakeBackend()
    try:
        for backend in (workers, service, fake):
            backend.set_lora_policy(allowed)
            assert backend.lora_policy is allowed
            with pytest.raises(LoRAError, match="inside the allowed LoRA folders"):
                backend.key_parts(p)
        assert pipe.loras.policy is allowed  # LocalWorkers sets it on every copy
        with pytest.raises(LoRAError, match="URLs are not allowed"):
            service.key_parts(Params(prompt="a square", seed=1, loras=[LoRA("https://example.org/a.safetensors")]))
        workers.set_lora_policy(None)
        assert pipe.loras.policy == SourcePolicy()  # None: the library's default again
    finally:
        pipe.set_lora_policy(None)
        service.close()


def test_with_closes_remotes_pools_and_pipelines():
    closed = []

    class Thing(Closing):
        def close(self) -> None:
            closed.append(self)

    with Thing() as thing:
        assert closed == []
    assert closed == [thing]
    with pytest.raises(RuntimeError):
        with Thing():
            raise RuntimeError("closed anyway")
    assert len(closed) == 2
    for cls in (Remote, RayPool, Pipeline, LocalWorkers):
        assert cls.__enter__ is Closing.__enter__ and cls.__exit__ is Closing.__exit__


def test_generate_on_a_started_job_reports_steps_and_refuses_bad_input():
    fake = FakeBackend()
    seen = []
    video = fake.generate(prompt="a square", seed=3, steps=3, on_step=lambda done, total: seen.append((done, total)))
    assert video.params.seed == 3 and seen == [(1, 3), (2, 3), (3, 3)]
    assert fake.ran[-1].truncate == "warn"
    fake.generate(prompt="a square", seed=3, truncate="error")
    assert fake.ran[-1].truncate == "error"
    with pytest.raises(ParamError, match="colour"):
        fake.generate(prompt="a square", colour="red")
    with pytest.raises(ParamError, match="job.params.seed"):
        Job(Params(prompt="x"))


def test_step_progress_calls_on_step_beside_its_bar():
    seen = []
    with step_progress(2, True, lambda done, total: seen.append(done)) as step:
        step(1, 2)
        step(2, 2)
    assert seen == [1, 2]
    with step_progress(2, None, None) as step:
        assert step is None
