from __future__ import annotations

import pytest

from tests.differential.region_standin import install

install()

from tests.differential.harness import FakeCluster  # noqa: E402


@pytest.fixture(scope="session")
def cluster() -> FakeCluster:
    """One generated catalog on three fake workers, shared by the differential tests."""
    return FakeCluster()
