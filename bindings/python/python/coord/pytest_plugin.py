"""pytest fixtures for coord, registered when the package is installed:

- ``coord_server``: a fresh in-process coord server (:class:`coord.testing.Server`) per test;
- ``coord_client``: a :class:`coord.Client` connected to it, closed after the test.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def coord_server():
    from coord.testing import Server

    with Server() as server:
        yield server


@pytest.fixture
def coord_client(coord_server):
    import coord

    with coord.Client(coord_server.hosts) as client:
        yield client
