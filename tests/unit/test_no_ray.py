"""The unit-test guard itself: nothing in tests/unit may start Ray."""

from __future__ import annotations

import pytest
import ray

from .conftest import RayStartedInUnitTest


def test_ray_init_is_refused() -> None:
    """Calling ray.init in a unit test raises instead of starting a cluster."""
    with pytest.raises(RayStartedInUnitTest):
        ray.init()
    assert not ray.is_initialized()


def test_remote_call_is_refused() -> None:
    """A .remote() call, which would auto-start Ray, raises instead."""
    @ray.remote
    def double(x: int) -> int:
        return 2 * x

    with pytest.raises(RayStartedInUnitTest):
        double.remote(2)
    assert not ray.is_initialized()
