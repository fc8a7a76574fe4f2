"""Unit tests run without Ray: any attempt to start or join a cluster fails loudly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

import pytest
import ray
import ray._private.worker
from hypothesis import settings

# Property tests check behaviour, never speed: no per-example deadline, which a shared,
# busy 2-core machine trips at random (the timing unit of tests/integration does not
# reach hypothesis).
settings.register_profile("raydesk", deadline=None)
settings.load_profile("raydesk")


class RayStartedInUnitTest(RuntimeError):
    """Raised when a unit test (or the code under test) tries to start Ray."""


def _refuse_ray(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise RayStartedInUnitTest(
        "unit tests must not start Ray; move this test to tests/integration")


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make ``ray.init`` (also reached by Ray's auto-init on ``.remote()``) raise."""
    monkeypatch.setattr(ray, "init", _refuse_ray)
    monkeypatch.setattr(ray._private.worker, "init", _refuse_ray)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield
    assert not ray.is_initialized(), "a unit test left Ray initialised"
