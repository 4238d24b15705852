"""Every JobName the service enqueues has a function registered by the worker."""

from __future__ import annotations

from service.queue import JobName
from service.settings import Settings
from workers.settings import worker_kwargs


def test_every_job_name_is_registered() -> None:
    kwargs = worker_kwargs(Settings(redis_url="redis://127.0.0.1:6379/0"))
    registered = {function.name for function in kwargs["functions"]}
    assert {str(name) for name in JobName} == registered
