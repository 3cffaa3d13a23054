"""Fixtures of the integration tests."""

import pytest

from tests.support.lead_files import make_bucket


@pytest.fixture
def bucket(tmp_path):
    """A local lead-import bucket: its ``incoming``, ``processed`` and ``failed`` folders."""
    return make_bucket(tmp_path)
