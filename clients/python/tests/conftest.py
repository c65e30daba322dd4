"""The tests talk to a real dedupd (over a real Cassandra) at $DEDUPD_URL.

Without it they do not skip: the run stops at once and says what is missing.
``clients/python/test`` starts a dedupd and sets the variable.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Iterator
from typing import Dict

import httpx
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import dedupd

SECRET = "s3cret-bearer-token-that-must-never-leak"


def _base_url() -> str:
    return os.environ.get("DEDUPD_URL", "").rstrip("/")


def pytest_configure(config: pytest.Config) -> None:
    url = _base_url()
    if not url:
        raise pytest.UsageError(
            "DEDUPD_URL is not set: these tests need a running dedupd over a real Cassandra. "
            "Run clients/python/test (it starts one), or start `dedupd serve` yourself and set "
            "DEDUPD_URL=http://127.0.0.1:<port>."
        )
    try:
        ready = httpx.get(f"{url}/readyz", timeout=10)
    except httpx.HTTPError as error:
        raise pytest.UsageError(f"DEDUPD_URL={url}: GET /readyz failed: {error}") from None
    if ready.status_code != 200:
        raise pytest.UsageError(f"DEDUPD_URL={url}: GET /readyz answered {ready.status_code}, not 200")


# One namespace per run: keys never meet those of an earlier run.
RUN_NAMESPACE = "pytest-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def base_url() -> str:
    return _base_url()


@pytest.fixture
def ns() -> str:
    return RUN_NAMESPACE


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A key no other test uses."""
    return f"{request.node.name[:60]}-{uuid.uuid4().hex}"


@pytest.fixture
def client(base_url: str) -> Iterator[dedupd.Client]:
    with dedupd.Client(base_url, retry_budget_secs=20) as c:
        yield c


def claim_counts(base_url: str) -> Dict[str, float]:
    """The service's own count of claims by outcome (``dedupd_claims_total``)."""
    counts: Dict[str, float] = {}
    for line in httpx.get(f"{base_url}/metrics", timeout=10).text.splitlines():
        match = re.match(r'^dedupd_claims_total\{outcome="([a-z_]+)"\} (\S+)$', line)
        if match:
            counts[match.group(1)] = float(match.group(2))
    assert counts, "GET /metrics shows no dedupd_claims_total"
    return counts


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
