"""The synchronous client against the real service."""

from __future__ import annotations

import json
import threading
import time
import traceback
import uuid
import warnings

import pytest
from conftest import SECRET, claim_counts
from faultproxy import FaultProxy, upstream_of

import dedupd

# --- the low-level calls ----------------------------------------------------------


def test_acquire_duplicate_complete_replay(client: dedupd.Client, ns: str, key: str) -> None:
    first = client.try_claim(ns, key, claimant="worker-1")
    assert isinstance(first, dedupd.Acquired)
    assert first.acquired and not first.takeover
    assert first.claimant == "worker-1"
    assert first.lease_expires_at is not None

    busy = client.try_claim(ns, key, claimant="worker-2")
    assert isinstance(busy, dedupd.Duplicate)
    assert busy.state == "in_progress" and busy.in_progress
    assert busy.retry_after is not None and busy.retry_after >= 1
    assert busy.holder == dedupd.holder_label("worker-1")
    assert busy.result is None

    done = client.complete(ns, key, first.token, {"charge": "ch_1"})
    assert done.outcome == "completed" and done.state == "completed"
    # A second complete with the same token is 200 too (a retry is harmless).
    again = client.complete(ns, key, first.token, {"charge": "ch_1"})
    assert again.outcome == "completed"

    replay = client.try_claim(ns, key)
    assert isinstance(replay, dedupd.Duplicate)
    assert replay.completed and replay.result == {"charge": "ch_1"}
    assert replay.completed_at is not None

    info = client.get(ns, key)
    assert info.state == "completed" and info.result == {"charge": "ch_1"}


def test_same_claimant_gets_its_token_back(client: dedupd.Client, ns: str, key: str) -> None:
    first = client.try_claim(ns, key, claimant="me")
    second = client.try_claim(ns, key, claimant="me")
    assert isinstance(first, dedupd.Acquired) and isinstance(second, dedupd.Acquired)
    assert second.token == first.token


def test_a_claim_without_claimant_still_sends_one(client: dedupd.Client, ns: str, key: str) -> None:
    first = client.try_claim(ns, key)
    assert isinstance(first, dedupd.Acquired)
    assert first.claimant and first.claimant.startswith("py-")
    info = client.get(ns, key)
    assert info.holder == dedupd.holder_label(first.claimant)
    # Two calls without a claimant are two logical claims: the second is a duplicate.
    assert isinstance(client.try_claim(ns, key), dedupd.Duplicate)


def test_try_claim_waits_for_the_holder(client: dedupd.Client, ns: str, key: str) -> None:
    holder = client.try_claim(ns, key, claimant="holder", lease_secs=60)
    assert isinstance(holder, dedupd.Acquired)
    finisher = threading.Timer(1.0, lambda: client.complete(ns, key, holder.token, "the result"))
    finisher.start()
    try:
        waited = client.try_claim(ns, key, wait_secs=20)
    finally:
        finisher.join(timeout=30)
    assert isinstance(waited, dedupd.Duplicate)
    assert waited.completed and waited.result == "the result"

    other = key + "-released"
    holder = client.try_claim(ns, other, claimant="holder", lease_secs=60)
    assert isinstance(holder, dedupd.Acquired)
    releaser = threading.Timer(1.0, lambda: client.release(ns, other, holder.token))
    releaser.start()
    try:
        taken = client.try_claim(ns, other, wait_secs=20)
    finally:
        releaser.join(timeout=30)
    assert isinstance(taken, dedupd.Acquired) and not taken.takeover


def test_fingerprint_mismatch(client: dedupd.Client, ns: str, key: str) -> None:
    assert isinstance(client.try_claim(ns, key, fingerprint="sha256:aa"), dedupd.Acquired)
    with pytest.raises(dedupd.FingerprintMismatch) as caught:
        client.try_claim(ns, key, fingerprint="sha256:bb")
    assert caught.value.status == 422
    assert caught.value.type == "urn:dedupd:problem:fingerprint-mismatch"
    assert caught.value.title and caught.value.detail


def test_release_extend_and_one_shot(client: dedupd.Client, ns: str, key: str) -> None:
    first = client.try_claim(ns, key, lease_secs=5)
    assert isinstance(first, dedupd.Acquired)
    extended = client.extend(ns, key, first.token, 60)
    assert extended.outcome == "extended"
    assert extended.lease_expires_at is not None and first.lease_expires_at is not None
    assert extended.lease_expires_at > first.lease_expires_at
    released = client.release(ns, key, first.token)
    assert released.outcome == "released"
    with pytest.raises(dedupd.NotFound):
        client.get(ns, key)
    # Claimable again at once, by anyone.
    second = client.try_claim(ns, key)
    assert isinstance(second, dedupd.Acquired) and not second.takeover
    with pytest.raises(dedupd.NotOwner) as caught:
        client.extend(ns, key, first.token, 60)
    assert caught.value.outcome == "not_owner"
    client.complete(ns, key, second.token)
    with pytest.raises(dedupd.AlreadyCompleted):
        client.release(ns, key, second.token)

    marker = client.try_claim(ns, key + "-marker", complete=True)
    assert isinstance(marker, dedupd.Acquired) and marker.state == "completed"
    assert isinstance(client.try_claim(ns, key + "-marker"), dedupd.Duplicate)


def test_problems_are_typed_and_never_retried(base_url: str, ns: str, key: str) -> None:
    with FaultProxy(upstream_of(base_url), lambda n, m, t: None) as proxy:
        with dedupd.Client(proxy.url) as client:
            with pytest.raises(dedupd.NotFound) as caught:
                client.get(ns, key)
            assert caught.value.status == 404 and caught.value.type == "urn:dedupd:problem:not-found"
            with pytest.raises(dedupd.BadRequest) as bad:
                client.try_claim("Not A Namespace", key)
            assert bad.value.type == "urn:dedupd:problem:invalid-request"
            with pytest.raises(dedupd.BadRequest):
                client.try_claim(ns, key, lease_secs=0)
        # Each 4xx was sent once.
        assert [s.status for s in proxy.seen] == [404, 400, 400]


def test_dot_keys_are_refused_before_sending(client: dedupd.Client, ns: str) -> None:
    for dots in (".", ".."):
        with pytest.raises(ValueError):
            client.try_claim(ns, dots)
    with pytest.raises(ValueError):
        client.try_claim(ns, "")


# --- retries ----------------------------------------------------------------------


def test_a_lost_answer_is_retried_with_the_same_claimant_and_acquires_once(base_url: str, ns: str, key: str) -> None:
    def drop_the_first_claim(n: int, method: str, target: str) -> str | None:
        return "drop" if n == 0 else None

    before = claim_counts(base_url)
    with FaultProxy(upstream_of(base_url), drop_the_first_claim) as proxy, dedupd.Client(proxy.url) as client:
        answer = client.try_claim(ns, key)
    assert isinstance(answer, dedupd.Acquired)
    after = claim_counts(base_url)
    # The service granted one claim; the retry re-entered it.
    assert after["acquired"] - before["acquired"] == 1
    assert after["reentrant"] - before["reentrant"] == 1
    dropped, retried = proxy.seen[0], proxy.seen[1]
    assert dropped.fault == "drop" and dropped.status == 201
    # The retry carried the same body, hence the same claimant.
    assert retried.body == dropped.body
    assert len(proxy.seen) == 2
    # The token the client holds is the one the lost answer carried ...
    assert json.loads(dropped.answer)["token"] == answer.token
    assert answer.claimant is not None
    with dedupd.Client(base_url) as direct:
        # ... and the one a second claim by the same claimant gives.
        again = direct.try_claim(ns, key, claimant=answer.claimant)
        assert isinstance(again, dedupd.Acquired) and again.token == answer.token
        # The service holds one claim, by that claimant; anyone else is a duplicate.
        info = direct.get(ns, key)
        assert info.state == "in_progress" and info.holder == dedupd.holder_label(answer.claimant)
        other = direct.try_claim(ns, key)
        assert isinstance(other, dedupd.Duplicate) and other.holder == info.holder
        direct.complete(ns, key, answer.token, "once")
        assert direct.get(ns, key).result == "once"


def test_a_timeout_is_retried_with_the_same_claimant(base_url: str, ns: str, key: str) -> None:
    with FaultProxy(upstream_of(base_url), lambda n, m, t: "stall" if n == 0 else None) as proxy:
        with dedupd.Client(proxy.url, timeout=1.0) as client:
            answer = client.try_claim(ns, key)
    assert isinstance(answer, dedupd.Acquired)
    assert [(s.fault, s.status) for s in proxy.seen] == [("stall", 201), (None, 201)]
    assert proxy.seen[0].body == proxy.seen[1].body
    assert json.loads(proxy.seen[0].answer)["token"] == answer.token


def test_a_503_is_retried_never_a_duplicate(base_url: str, ns: str, key: str) -> None:
    with FaultProxy(upstream_of(base_url), lambda n, m, t: "503" if n < 2 else None) as proxy:
        with dedupd.Client(proxy.url) as client:
            answer = client.try_claim(ns, key)
            assert isinstance(answer, dedupd.Acquired)
            done = client.complete(ns, key, answer.token, 1)
            assert done.outcome == "completed"
    assert [s.status for s in proxy.seen] == [503, 503, 201, 200]
    assert proxy.seen[0].body == proxy.seen[2].body


def test_transitions_are_retried_after_a_lost_answer(base_url: str, ns: str, key: str) -> None:
    with FaultProxy(upstream_of(base_url), lambda n, m, t: "drop" if n in (1, 3) else None) as proxy:
        with dedupd.Client(proxy.url) as client:
            answer = client.try_claim(ns, key)
            assert isinstance(answer, dedupd.Acquired)
            assert client.extend(ns, key, answer.token, 30).outcome == "extended"
            assert client.complete(ns, key, answer.token, {"n": 1}).outcome == "completed"
    assert [(s.fault, s.status) for s in proxy.seen] == [
        (None, 201),
        ("drop", 200),
        (None, 200),
        ("drop", 200),
        (None, 200),
    ]


def test_a_release_whose_answer_was_lost_is_released(base_url: str, ns: str, key: str) -> None:
    with FaultProxy(upstream_of(base_url), lambda n, m, t: "drop" if n == 1 else None) as proxy:
        with dedupd.Client(proxy.url) as client:
            answer = client.try_claim(ns, key)
            assert isinstance(answer, dedupd.Acquired)
            assert client.release(ns, key, answer.token).outcome == "released"
    assert [s.status for s in proxy.seen] == [201, 200, 404]
    with dedupd.Client(base_url) as direct:
        assert isinstance(direct.try_claim(ns, key), dedupd.Acquired)


def test_unavailable_after_the_budget(base_url: str, ns: str, key: str) -> None:
    with FaultProxy(upstream_of(base_url), lambda n, m, t: "503") as proxy:
        with dedupd.Client(proxy.url, retry_budget_secs=1.5) as client:
            with pytest.raises(dedupd.Unavailable) as caught:
                client.try_claim(ns, key, claimant="patient")
    assert caught.value.attempts >= 2
    assert caught.value.claimant == "patient"
    assert caught.value.problem_type == "urn:dedupd:problem:unavailable"
    assert len({s.body for s in proxy.seen}) == 1


def test_unavailable_when_nothing_listens(ns: str, key: str) -> None:
    with dedupd.Client("http://127.0.0.1:9", retry_budget_secs=0.5) as client:
        with pytest.raises(dedupd.Unavailable) as caught:
            client.try_claim(ns, key)
    assert "ConnectError" in str(caught.value)


# --- the bearer token -------------------------------------------------------------


def _texts(error: BaseException) -> str:
    parts = [str(error), repr(error), "".join(traceback.format_exception(type(error), error, error.__traceback__))]
    return "\n".join(parts)


def test_the_bearer_token_never_appears_in_an_exception(base_url: str, ns: str, key: str) -> None:
    raised = []
    with dedupd.Client(base_url, token=SECRET) as client:
        assert SECRET not in repr(client)
        for call in (
            lambda: client.get(ns, key),
            lambda: client.try_claim("BAD NS", key),
            lambda: client.complete(ns, key, str(uuid.uuid4())),
        ):
            with pytest.raises(dedupd.DedupdError) as caught:
                call()
            raised.append(caught.value)
        acquired = client.try_claim(ns, key, fingerprint="a")
        assert isinstance(acquired, dedupd.Acquired)
        with pytest.raises(dedupd.FingerprintMismatch) as mismatch:
            client.try_claim(ns, key, fingerprint="b")
        raised.append(mismatch.value)
        other = client.try_claim(ns, key + "-other")
        assert isinstance(other, dedupd.Acquired)
        with pytest.raises(dedupd.NotOwner) as not_owner:
            client.release(ns, key, other.token)
        raised.append(not_owner.value)
    with dedupd.Client("http://127.0.0.1:9", token=SECRET, retry_budget_secs=0.3) as dead:
        with pytest.raises(dedupd.Unavailable) as gone:
            dead.try_claim(ns, key)
        raised.append(gone.value)
    with FaultProxy(upstream_of(base_url), lambda n, m, t: "503") as proxy:
        with dedupd.Client(proxy.url, token=SECRET, retry_budget_secs=1.2) as flaky:
            with pytest.raises(dedupd.Unavailable) as busy:
                flaky.try_claim(ns, key)
            raised.append(busy.value)
    assert len(raised) == 7
    for error in raised:
        assert SECRET not in _texts(error), type(error).__name__


# --- the context manager ---------------------------------------------------------


def test_claim_block_completes_on_success(client: dedupd.Client, ns: str, key: str) -> None:
    with client.claim(ns, key) as claim:
        assert claim.acquired
        assert claim.state == "in_progress"
        claim.complete({"charge": "ch_2"})
        assert claim.state == "completed"
    info = client.get(ns, key)
    assert info.state == "completed" and info.result == {"charge": "ch_2"}
    with client.claim(ns, key) as again:
        assert not again.acquired
        assert again.state == "completed" and again.result == {"charge": "ch_2"}


def test_claim_block_releases_on_exception(client: dedupd.Client, ns: str, key: str) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), client.claim(ns, key) as claim:
        assert claim.acquired
        raise Boom()
    with pytest.raises(dedupd.NotFound):
        client.get(ns, key)
    # Claimable again at once (no takeover: it was released, not left to lapse).
    again = client.try_claim(ns, key)
    assert isinstance(again, dedupd.Acquired) and not again.takeover


def test_claim_block_left_without_complete_releases_and_warns(client: dedupd.Client, ns: str, key: str) -> None:
    with pytest.warns(dedupd.UnreleasedClaimWarning), client.claim(ns, key) as claim:
        assert claim.acquired
    assert isinstance(client.try_claim(ns, key), dedupd.Acquired)


def test_claim_block_for_a_duplicate_in_progress(client: dedupd.Client, ns: str, key: str) -> None:
    holder = client.try_claim(ns, key, claimant="holder")
    assert isinstance(holder, dedupd.Acquired)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with client.claim(ns, key) as claim:
            assert not claim.acquired and claim.state == "in_progress"
            with pytest.raises(RuntimeError):
                claim.complete(1)
    # The duplicate's block touched nothing.
    assert client.complete(ns, key, holder.token).outcome == "completed"


def test_the_lease_is_extended_while_the_block_runs(client: dedupd.Client, ns: str, key: str) -> None:
    with client.claim(ns, key, lease_secs=3) as claim:
        assert claim.acquired
        # Work that outlasts the lease twice over: without extensions
        # another claimant would take over.
        for _ in range(2):
            time.sleep(4)
            rival = client.try_claim(ns, key)
            assert isinstance(rival, dedupd.Duplicate) and rival.in_progress
        claim.complete("slow but sure")
        assert not claim.lost
    assert client.get(ns, key).result == "slow but sure"


def test_a_lost_lease_makes_complete_raise(client: dedupd.Client, ns: str, key: str) -> None:
    with pytest.raises(dedupd.LeaseLost), client.claim(ns, key, lease_secs=5) as claim:
        assert claim.acquired and claim.token
        # Someone else releases it (as if the lease had passed and been taken over).
        client.release(ns, key, claim.token)
        rival = client.try_claim(ns, key, claimant="rival")
        assert isinstance(rival, dedupd.Acquired)
        deadline = time.monotonic() + 10
        while not claim.lost and time.monotonic() < deadline:
            time.sleep(0.1)
        assert claim.lost
        claim.complete("too late")
    # The rival's claim was left alone.
    assert client.get(ns, key).holder == dedupd.holder_label("rival")


# --- the decorator -----------------------------------------------------------------


def test_idempotent_runs_once_for_sequential_calls(client: dedupd.Client, ns: str, key: str) -> None:
    runs = []

    @client.idempotent(ns, key=lambda order: order["id"], wait_secs=10)
    def charge(order: dict) -> dict:
        runs.append(order["id"])
        return {"charged": order["amount"], "run": len(runs)}

    first = charge({"id": key, "amount": 5})
    second = charge({"id": key, "amount": 5})
    assert first == second == {"charged": 5, "run": 1}
    assert runs == [key]
    other = charge({"id": key + "-2", "amount": 7})
    assert other == {"charged": 7, "run": 2}


def test_idempotent_runs_once_for_concurrent_callers(client: dedupd.Client, ns: str, key: str) -> None:
    runs = []
    lock = threading.Lock()

    @client.idempotent(ns, key=lambda k: k, wait_secs=30)
    def work(k: str) -> dict:
        with lock:
            runs.append(k)
        time.sleep(1.5)
        return {"done": k}

    results: list = []
    failures: list = []

    def caller() -> None:
        try:
            results.append(work(key))
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert results == [{"done": key}] * 8
    assert runs == [key]


def test_idempotent_exception_releases_and_the_next_call_runs(client: dedupd.Client, ns: str, key: str) -> None:
    calls = []

    @client.idempotent(ns, key=lambda n: f"{key}-{n}")
    def flaky(n: int) -> int:
        calls.append(n)
        if len(calls) == 1:
            raise ValueError("first try fails")
        return n * 10

    with pytest.raises(ValueError):
        flaky(1)
    assert flaky(1) == 10
    assert flaky(1) == 10
    assert calls == [1, 1]


def test_idempotent_refuses_a_result_that_is_not_json(client: dedupd.Client, ns: str, key: str) -> None:
    @client.idempotent(ns, key=lambda: key)
    def odd() -> object:
        return object()

    with pytest.raises(TypeError):
        odd()
    assert isinstance(client.try_claim(ns, key), dedupd.Acquired)


def test_idempotent_waits_a_bounded_time(client: dedupd.Client, ns: str, key: str) -> None:
    holder = client.try_claim(ns, key, claimant="slow-holder", lease_secs=60)
    assert isinstance(holder, dedupd.Acquired)
    runs = []

    @client.idempotent(ns, key=lambda: key, wait_secs=2)
    def never() -> None:
        runs.append(1)

    with pytest.raises(dedupd.StillInProgress):
        never()
    assert runs == []
    client.complete(ns, key, holder.token, "by the holder")
    assert never() == "by the holder"
    assert runs == []


def test_idempotent_refuses_async_functions(client: dedupd.Client, ns: str) -> None:
    with pytest.raises(TypeError):

        @client.idempotent(ns, key=lambda: "k")
        async def nope() -> None:
            pass
