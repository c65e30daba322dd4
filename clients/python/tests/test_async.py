"""The asyncio client against the real service (the same API, awaited)."""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import AsyncIterator

import pytest
from conftest import SECRET
from faultproxy import FaultProxy, upstream_of

import dedupd

pytestmark = pytest.mark.anyio


@pytest.fixture
async def aclient(base_url: str) -> AsyncIterator[dedupd.AsyncClient]:
    async with dedupd.AsyncClient(base_url, retry_budget_secs=20) as c:
        yield c


async def test_acquire_duplicate_complete_replay(aclient: dedupd.AsyncClient, ns: str, key: str) -> None:
    first = await aclient.try_claim(ns, key, claimant="a-1")
    assert isinstance(first, dedupd.Acquired)
    busy = await aclient.try_claim(ns, key, claimant="a-2")
    assert isinstance(busy, dedupd.Duplicate) and busy.in_progress
    assert busy.holder == dedupd.holder_label("a-1") and busy.retry_after
    assert (await aclient.complete(ns, key, first.token, [1, 2])).outcome == "completed"
    assert (await aclient.complete(ns, key, first.token, [1, 2])).outcome == "completed"
    replay = await aclient.try_claim(ns, key)
    assert isinstance(replay, dedupd.Duplicate) and replay.completed and replay.result == [1, 2]
    assert (await aclient.get(ns, key)).result == [1, 2]
    with pytest.raises(dedupd.NotFound):
        await aclient.get(ns, key + "-never")


async def test_claim_block_completes_and_releases(aclient: dedupd.AsyncClient, ns: str, key: str) -> None:
    async with aclient.claim(ns, key) as claim:
        assert claim.acquired
        await claim.complete({"ok": True})
    async with aclient.claim(ns, key) as again:
        assert not again.acquired and again.state == "completed" and again.result == {"ok": True}

    with pytest.raises(KeyError):
        async with aclient.claim(ns, key + "-x") as claim:
            assert claim.acquired
            raise KeyError("boom")
    fresh = await aclient.try_claim(ns, key + "-x")
    assert isinstance(fresh, dedupd.Acquired) and not fresh.takeover

    with pytest.warns(dedupd.UnreleasedClaimWarning):
        async with aclient.claim(ns, key + "-y") as claim:
            assert claim.acquired
    assert isinstance(await aclient.try_claim(ns, key + "-y"), dedupd.Acquired)


async def test_the_lease_is_extended_by_a_task(aclient: dedupd.AsyncClient, ns: str, key: str) -> None:
    async with aclient.claim(ns, key, lease_secs=3) as claim:
        assert claim.acquired
        for _ in range(2):
            await asyncio.sleep(4)
            rival = await aclient.try_claim(ns, key)
            assert isinstance(rival, dedupd.Duplicate) and rival.in_progress
        await claim.complete("kept")
    assert (await aclient.get(ns, key)).result == "kept"


async def test_a_lost_lease_makes_complete_raise(aclient: dedupd.AsyncClient, ns: str, key: str) -> None:
    with pytest.raises(dedupd.LeaseLost):
        async with aclient.claim(ns, key, lease_secs=5) as claim:
            assert claim.token
            await aclient.release(ns, key, claim.token)
            assert isinstance(await aclient.try_claim(ns, key, claimant="rival"), dedupd.Acquired)
            for _ in range(100):
                if claim.lost:
                    break
                await asyncio.sleep(0.1)
            assert claim.lost
            await claim.complete("too late")
    assert (await aclient.get(ns, key)).holder == dedupd.holder_label("rival")


async def test_idempotent_runs_once_for_sequential_calls(aclient: dedupd.AsyncClient, ns: str, key: str) -> None:
    runs = []

    @aclient.idempotent(ns, key=lambda order: order["id"])
    async def charge(order: dict) -> dict:
        runs.append(1)
        return {"charged": order["amount"]}

    assert await charge({"id": key, "amount": 3}) == {"charged": 3}
    assert await charge({"id": key, "amount": 3}) == {"charged": 3}
    assert runs == [1]


async def test_idempotent_runs_once_for_concurrent_tasks(aclient: dedupd.AsyncClient, ns: str, key: str) -> None:
    runs = []

    @aclient.idempotent(ns, key=lambda k: k, wait_secs=30)
    async def work(k: str) -> dict:
        runs.append(k)
        await asyncio.sleep(1.5)
        return {"done": k}

    results = await asyncio.wait_for(asyncio.gather(*(work(key) for _ in range(8))), timeout=60)
    assert results == [{"done": key}] * 8
    assert runs == [key]


async def test_idempotent_exception_releases(aclient: dedupd.AsyncClient, ns: str, key: str) -> None:
    calls = []

    @aclient.idempotent(ns, key=lambda: key)
    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first try fails")
        return "second"

    with pytest.raises(RuntimeError):
        await flaky()
    assert await flaky() == "second"
    assert await flaky() == "second"
    assert calls == [1, 1]


async def test_idempotent_waits_a_bounded_time(aclient: dedupd.AsyncClient, ns: str, key: str) -> None:
    holder = await aclient.try_claim(ns, key, claimant="slow", lease_secs=60)
    assert isinstance(holder, dedupd.Acquired)

    @aclient.idempotent(ns, key=lambda: key, wait_secs=2)
    async def never() -> None:
        raise AssertionError("must not run")

    with pytest.raises(dedupd.StillInProgress):
        await never()
    await aclient.complete(ns, key, holder.token, "holder's")
    assert await never() == "holder's"


async def test_idempotent_refuses_plain_functions(aclient: dedupd.AsyncClient, ns: str) -> None:
    with pytest.raises(TypeError):

        @aclient.idempotent(ns, key=lambda: "k")
        def nope() -> None:
            pass


async def test_a_lost_answer_is_retried_with_the_same_claimant(base_url: str, ns: str, key: str) -> None:
    with FaultProxy(upstream_of(base_url), lambda n, m, t: "drop" if n == 0 else None) as proxy:
        async with dedupd.AsyncClient(proxy.url) as client:
            answer = await client.try_claim(ns, key)
    assert isinstance(answer, dedupd.Acquired)
    assert len(proxy.seen) == 2 and proxy.seen[0].body == proxy.seen[1].body
    assert json.loads(proxy.seen[0].answer)["token"] == answer.token
    async with dedupd.AsyncClient(base_url) as direct:
        again = await direct.try_claim(ns, key, claimant=answer.claimant)
        assert isinstance(again, dedupd.Acquired) and again.token == answer.token
        assert (await direct.get(ns, key)).holder == dedupd.holder_label(answer.claimant or "")


async def test_a_503_is_retried_and_the_token_never_leaks(base_url: str, ns: str, key: str) -> None:
    with FaultProxy(upstream_of(base_url), lambda n, m, t: "503" if n == 0 else None) as proxy:
        async with dedupd.AsyncClient(proxy.url, token=SECRET) as client:
            assert SECRET not in repr(client)
            answer = await client.try_claim(ns, key)
            assert isinstance(answer, dedupd.Acquired)
            with pytest.raises(dedupd.NotFound) as caught:
                await client.release(ns, key + "-none", answer.token)
    assert [s.status for s in proxy.seen][:2] == [503, 201]
    async with dedupd.AsyncClient("http://127.0.0.1:9", token=SECRET, retry_budget_secs=0.3) as dead:
        with pytest.raises(dedupd.Unavailable) as gone:
            await dead.try_claim(ns, key)
    for error in (caught.value, gone.value):
        text = str(error) + repr(error) + "".join(traceback.format_exception(type(error), error, error.__traceback__))
        assert SECRET not in text
