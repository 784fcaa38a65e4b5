"""A local Ray with 2 CPUs (the size of the development and CI machines), shared by the integration tests."""

import pytest

ray = pytest.importorskip("ray")


@pytest.fixture(scope="session")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()
