"""Bearer tokens end to end, against a dedupd that has them ($DEDUPD_AUTH_URL).

``clients/python/test`` starts that dedupd with two tokens: one for every
namespace ($DEDUPD_AUTH_TOKEN) and one for a single namespace
($DEDUPD_AUTH_LIMITED_TOKEN, for $DEDUPD_AUTH_LIMITED_NAMESPACE).
"""

from __future__ import annotations

import os
import uuid

import pytest

import dedupd


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        # Not a skip: without the service with tokens these tests cannot
        # say anything, and a silent pass would hide that.
        pytest.fail(f"{name} is not set: run clients/python/test, which starts a dedupd with bearer tokens")
    return value


@pytest.fixture
def auth_url() -> str:
    return _required("DEDUPD_AUTH_URL").rstrip("/")


@pytest.fixture
def token() -> str:
    return _required("DEDUPD_AUTH_TOKEN")


@pytest.fixture
def limited_token() -> str:
    return _required("DEDUPD_AUTH_LIMITED_TOKEN")


@pytest.fixture
def limited_ns() -> str:
    return _required("DEDUPD_AUTH_LIMITED_NAMESPACE")


def _never_shows(secret: str, error: BaseException) -> None:
    for text in (str(error), repr(error), repr(error.args)):
        assert secret not in text


def test_a_valid_token_claims_completes_and_replays(auth_url: str, token: str, ns: str, key: str) -> None:
    with dedupd.Client(auth_url, token=token) as client:
        assert token not in repr(client)
        first = client.try_claim(ns, key)
        assert isinstance(first, dedupd.Acquired)
        client.complete(ns, key, first.token, {"paid": 1})
        again = client.try_claim(ns, key)
        assert isinstance(again, dedupd.Duplicate) and again.result == {"paid": 1}


def test_no_token_or_a_wrong_one_is_unauthorized(auth_url: str, ns: str, key: str) -> None:
    with dedupd.Client(auth_url) as anonymous:
        with pytest.raises(dedupd.Unauthorized):
            anonymous.try_claim(ns, key)
    wrong = "py-wrong-" + uuid.uuid4().hex
    with dedupd.Client(auth_url, token=wrong) as client:
        with pytest.raises(dedupd.Unauthorized) as caught:
            client.try_claim(ns, key)
        _never_shows(wrong, caught.value)
        with pytest.raises(dedupd.Unauthorized):
            client.get(ns, key)


def test_a_token_is_held_to_its_namespaces(
    auth_url: str, limited_token: str, limited_ns: str, ns: str, key: str
) -> None:
    with dedupd.Client(auth_url, token=limited_token) as client:
        with pytest.raises(dedupd.Forbidden) as caught:
            client.try_claim(ns, key)
        _never_shows(limited_token, caught.value)
        # Its own namespace works, and a refused call claimed nothing there.
        assert isinstance(client.try_claim(limited_ns, key), dedupd.Acquired)


def test_idempotent_with_a_refused_token_never_runs_the_function(
    auth_url: str, limited_token: str, ns: str, key: str
) -> None:
    runs = []
    with dedupd.Client(auth_url, token=limited_token) as client:

        @client.idempotent(ns, key=lambda order: order["id"])
        def charge(order: dict) -> dict:
            runs.append(order["id"])
            return {"charged": True}

        with pytest.raises(dedupd.Forbidden):
            charge({"id": key})
    assert runs == []


@pytest.mark.anyio
async def test_the_async_client_sends_the_token_too(
    auth_url: str, token: str, limited_token: str, ns: str, key: str
) -> None:
    async with dedupd.AsyncClient(auth_url, token=token) as client:
        assert isinstance(await client.try_claim(ns, key), dedupd.Acquired)
    async with dedupd.AsyncClient(auth_url, token=limited_token) as client:
        with pytest.raises(dedupd.Forbidden):
            await client.try_claim(ns, key + "-other")
    async with dedupd.AsyncClient(auth_url) as client:
        with pytest.raises(dedupd.Unauthorized):
            await client.try_claim(ns, key + "-other")
