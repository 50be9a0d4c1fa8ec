"""Fixtures of the integration tests built on the session's ``stack``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cloudfree.settings import Settings
from cloudfree.testing import settings_environment


@pytest.fixture(scope="module")
def env(stack: Settings) -> Iterator[Settings]:
    """The stack's settings, also exported as ``CLOUDFREE_*`` variables for the module (the
    flows and Dask workers build their own Settings from the environment)."""
    with settings_environment(stack):
        yield stack
