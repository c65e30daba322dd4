"""The synchronous client: ``Client``, its ``claim(...)`` context manager and
its ``@idempotent`` decorator."""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
import warnings
from typing import Any, Callable, Dict, Optional, TypeVar, Union

import httpx

from . import _protocol as p
from . import errors

log = logging.getLogger("dedupd")

F = TypeVar("F", bound=Callable[..., Any])


class Client:
    """A dedupd client over ``httpx.Client``.

    ``base_url`` is the service's address (``http://dedupd:8080``); ``token``
    the bearer token, if the service requires one (it never appears in an
    exception or a ``repr``). ``timeout`` bounds each request (a claim with
    ``wait_secs`` gets that much more to read). ``retry_budget_secs`` bounds
    how long one call keeps retrying 503 answers and transport failures
    before it raises :class:`~dedupd.Unavailable`.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        token: Optional[str] = None,
        *,
        timeout: Union[float, httpx.Timeout] = p.DEFAULT_TIMEOUT_SECS,
        retry_budget_secs: float = p.DEFAULT_RETRY_BUDGET_SECS,
    ) -> None:
        self.base_url = str(base_url).rstrip("/")
        self.timeout = timeout
        self.retry_budget_secs = retry_budget_secs
        self._has_token = bool(token)
        self._scrub = p.Scrubber(token)
        self._http = httpx.Client(base_url=self.base_url, headers=p.auth_headers(token), timeout=timeout)

    def __repr__(self) -> str:
        token = "<set>" if self._has_token else None
        return f"Client(base_url={self.base_url!r}, token={token}, retry_budget_secs={self.retry_budget_secs!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the underlying httpx client and its connections."""
        self._http.close()

    # --- the retry loop --------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Optional[Dict[str, Any]],
        parse: Callable[[httpx.Response, int], Any],
        *,
        claimant: Optional[str] = None,
        wait_secs: Optional[int] = None,
        budget: Optional[float] = None,
    ) -> Any:
        schedule = p.RetrySchedule(self.retry_budget_secs if budget is None else budget)
        timeout = p.request_timeout(self.timeout, wait_secs)
        attempt = 0
        while True:
            attempt += 1
            last: Optional[p.Retry] = None
            try:
                response = self._http.request(method, path, json=body, timeout=timeout)
            except p.RETRY_EXCEPTIONS as error:
                description = p.describe_transport_error(error, self._scrub)
                retry_after: Optional[float] = None
            else:
                answer = parse(response, attempt)
                if not isinstance(answer, p.Retry):
                    return answer
                last, description, retry_after = answer, answer.description, answer.retry_after
            delay = schedule.next_delay(retry_after)
            if delay is None:
                raise p.unavailable(description, attempt, claimant, last)
            log.debug("dedupd %s %s: attempt %d: %s; retrying in %.2fs", method, path, attempt, description, delay)
            time.sleep(delay)

    # --- low-level calls ------------------------------------------------------------

    def try_claim(
        self,
        namespace: str,
        key: str,
        *,
        ttl_secs: Optional[int] = None,
        lease_secs: Optional[int] = None,
        fingerprint: Optional[str] = None,
        claimant: Optional[str] = None,
        wait_secs: Optional[int] = None,
        complete: bool = False,
    ) -> p.ClaimAnswer:
        """One claim of ``key``: ``Acquired`` or ``Duplicate``.

        A claimant is always sent: ``claimant``, or a fresh random one for
        this call; every retry (503, timeout, connection lost) reuses it, so
        a claim granted by an attempt whose answer was lost comes back with
        its token. ``wait_secs`` (0–30) asks the server to hold the request
        while another claimant's claim is in progress. Raises
        ``FingerprintMismatch`` (422), another ``ProblemError`` (4xx), or
        ``Unavailable`` once the retry budget is spent. Never reports a 503
        as a duplicate.
        """
        claimant = claimant or p.new_claimant()
        body = p.claim_body(
            claimant=claimant,
            ttl_secs=ttl_secs,
            lease_secs=lease_secs,
            fingerprint=fingerprint,
            wait_secs=wait_secs,
            complete=complete,
        )

        def parse(response: httpx.Response, attempt: int) -> Any:
            return p.parse_claim(
                response.status_code, response.headers, response.content, claimant=claimant, scrub=self._scrub
            )

        answer: p.ClaimAnswer = self._call(
            "POST", p.claim_path(namespace, key), body, parse, claimant=claimant, wait_secs=wait_secs
        )
        return answer

    def _transition(
        self, action: str, namespace: str, key: str, body: Dict[str, Any], budget: Optional[float] = None
    ) -> p.Transition:
        def parse(response: httpx.Response, attempt: int) -> Any:
            return p.parse_transition(
                response.status_code,
                response.headers,
                response.content,
                action=action,
                attempt=attempt,
                scrub=self._scrub,
            )

        answer: p.Transition = self._call("POST", p.claim_path(namespace, key, action), body, parse, budget=budget)
        return answer

    def complete(self, namespace: str, key: str, token: str, result: Any = None) -> p.Transition:
        """Completes the claim owned by ``token``, storing ``result`` (JSON, ≤ 16 KiB).

        Retried like a claim; a repeat with the same token answers 200, so a
        lost answer is harmless. Raises ``NotOwner`` (taken over or released),
        ``NotFound``, or ``Unavailable``.
        """
        p.check_json(result)
        body: Dict[str, Any] = {"token": token}
        if result is not None:
            body["result"] = result
        return self._transition("complete", namespace, key, body)

    def release(self, namespace: str, key: str, token: str) -> p.Transition:
        """Releases the claim owned by ``token``: the key is claimable again at once.

        When a retry (after a lost answer) hears 404 or ``not_owner``, the
        token holds nothing any more and the call returns ``released``.
        Raises ``AlreadyCompleted``, ``NotOwner``, ``NotFound``, ``Unavailable``.
        """
        return self._transition("release", namespace, key, {"token": token})

    def extend(
        self, namespace: str, key: str, token: str, lease_secs: int, *, _budget: Optional[float] = None
    ) -> p.Transition:
        """Extends the lease of the claim owned by ``token`` to ``lease_secs`` from now."""
        return self._transition("extend", namespace, key, {"token": token, "lease_secs": lease_secs}, _budget)

    def get(self, namespace: str, key: str) -> p.ClaimInfo:
        """The claim's state (``ClaimInfo``); raises ``NotFound`` if there is no live claim."""

        def parse(response: httpx.Response, attempt: int) -> Any:
            return p.parse_info(response.status_code, response.headers, response.content, scrub=self._scrub)

        answer: p.ClaimInfo = self._call("GET", p.claim_path(namespace, key), None, parse)
        return answer

    # --- high level -------------------------------------------------------------------

    def claim(
        self,
        namespace: str,
        key: str,
        *,
        ttl_secs: Optional[int] = None,
        lease_secs: Optional[int] = None,
        fingerprint: Optional[str] = None,
        claimant: Optional[str] = None,
        wait_secs: Optional[int] = None,
    ) -> Claim:
        """A context manager around one claim: ``with client.claim("orders", key) as claim:``.

        On entry the key is claimed (``try_claim``). Inside, ``claim.acquired``
        tells the owner, who calls ``claim.complete(result)``; for a
        duplicate, ``claim.state`` and ``claim.result`` tell what the other
        claimant did. While the owner is inside, a background thread extends
        the lease every third of it. Leaving with an exception releases the
        claim (and re-raises); leaving without completing releases it too and
        warns (``UnreleasedClaimWarning``).
        """
        return Claim(
            self,
            namespace,
            key,
            ttl_secs=ttl_secs,
            lease_secs=lease_secs,
            fingerprint=fingerprint,
            claimant=claimant,
            wait_secs=wait_secs,
        )

    def idempotent(
        self,
        namespace: str,
        *,
        key: Union[Callable[..., Any], str],
        wait_secs: float = 30.0,
        ttl_secs: Optional[int] = None,
        lease_secs: Optional[int] = None,
        fingerprint: Optional[Callable[..., Optional[str]]] = None,
    ) -> Callable[[F], F]:
        """Runs the decorated function at most once per key within the retention window.

        ``key`` is called with the function's arguments and gives the key (a
        str; an int is turned into one). The first caller runs the function
        and its return value, which must be JSON-serialisable, is stored;
        later and concurrent callers with the same key get that stored value
        (as JSON decodes it) instead of running the function. A caller that
        finds the key in progress waits for it (the server holds each claim
        up to 30 s) for at most ``wait_secs`` in all, then raises
        ``StillInProgress``. An exception in the function releases the key
        (the next call runs it) and propagates.
        """

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):
                raise TypeError("Client.idempotent takes a plain function; use AsyncClient.idempotent for async def")

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                the_key = _key_of(key, args, kwargs)
                the_fingerprint = fingerprint(*args, **kwargs) if fingerprint is not None else None
                claimant = p.new_claimant()
                deadline = time.monotonic() + max(0.0, wait_secs)
                while True:
                    remaining = deadline - time.monotonic()
                    chunk = p.wait_chunk(remaining) if remaining > 0 else None
                    started = time.monotonic()
                    with self.claim(
                        namespace,
                        the_key,
                        ttl_secs=ttl_secs,
                        lease_secs=lease_secs,
                        fingerprint=the_fingerprint,
                        claimant=claimant,
                        wait_secs=chunk,
                    ) as claim:
                        if claim.acquired:
                            value = fn(*args, **kwargs)
                            claim.complete(value)
                            return value
                        if claim.state == "completed":
                            return claim.result
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise errors.StillInProgress(
                            f"key {the_key!r} in {namespace} is still in progress after waiting {wait_secs}s",
                            namespace=namespace,
                            key=the_key,
                        )
                    if time.monotonic() - started < (chunk or 0) / 2:
                        # The server answered before the wait it was asked
                        # for (another claimant took the key meanwhile): do
                        # not spin.
                        time.sleep(min(0.2, remaining))

            return wrapper  # type: ignore[return-value]

        return decorate


def _key_of(key: Union[Callable[..., Any], str], args: Any, kwargs: Any) -> str:
    value = key(*args, **kwargs) if callable(key) else key
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"the key function must give a str (or an int), not {type(value).__name__}")
    return str(value)


class Claim:
    """One claim, as a context manager (see :meth:`Client.claim`)."""

    def __init__(
        self,
        client: Client,
        namespace: str,
        key: str,
        *,
        ttl_secs: Optional[int],
        lease_secs: Optional[int],
        fingerprint: Optional[str],
        claimant: Optional[str],
        wait_secs: Optional[int],
    ) -> None:
        self._client = client
        self.namespace = namespace
        self.key = key
        self._options = dict(
            ttl_secs=ttl_secs,
            lease_secs=lease_secs,
            fingerprint=fingerprint,
            claimant=claimant or p.new_claimant(),
            wait_secs=wait_secs,
        )
        self._lease_secs = lease_secs
        self.answer: Optional[p.ClaimAnswer] = None
        self.completion: Optional[p.Transition] = None
        self._done = False
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __repr__(self) -> str:
        return f"Claim(namespace={self.namespace!r}, key={self.key!r}, answer={self.answer!r}, lost={self.lost})"

    # --- what the block reads ------------------------------------------------------

    @property
    def acquired(self) -> bool:
        """True for the owner (201)."""
        return isinstance(self.answer, p.Acquired)

    @property
    def state(self) -> Optional[str]:
        """``in_progress`` or ``completed``."""
        if self.completion is not None:
            return self.completion.state
        return self.answer.state if self.answer is not None else None

    @property
    def result(self) -> Any:
        """For a completed duplicate, the result the winner stored; after ``complete``, the stored result."""
        if self.completion is not None:
            return self.completion.result
        return self.answer.result if isinstance(self.answer, p.Duplicate) else None

    @property
    def token(self) -> Optional[str]:
        return self.answer.token if isinstance(self.answer, p.Acquired) else None

    @property
    def lost(self) -> bool:
        """True once an extension (or the completion) found the lease taken over."""
        return self._lost.is_set()

    # --- the block -----------------------------------------------------------------

    def __enter__(self) -> Claim:
        self.answer = self._client.try_claim(self.namespace, self.key, **self._options)  # type: ignore[arg-type]
        if isinstance(self.answer, p.Acquired):
            length, interval = p.lease_interval(self.answer, self._lease_secs)
            if length is not None and interval is not None:
                self._thread = threading.Thread(
                    target=self._keep_extending,
                    args=(self.answer.token, length, interval),
                    name=f"dedupd-extend-{self.namespace}",
                    daemon=True,
                )
                self._thread.start()
            else:
                # Claimed with complete=True: nothing left to do.
                self._done = self.answer.state == "completed"
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._stop_extending()
        if not self.acquired or self._done or self.lost:
            return
        self._done = True
        try:
            self._client.release(self.namespace, self.key, self.token)  # type: ignore[arg-type]
        except errors.DedupdError as error:
            # The lease will pass anyway; the block's own exception matters more.
            log.warning("dedupd: could not release %s/%r: %s", self.namespace, self.key, error)
        if exc_type is None:
            warnings.warn(
                f"the claim of {self.key!r} in {self.namespace} was left without complete(): it was released",
                errors.UnreleasedClaimWarning,
                stacklevel=2,
            )
        return

    def complete(self, result: Any = None) -> p.Transition:
        """Completes the claim with ``result`` (JSON-serialisable, ≤ 16 KiB); only the owner may.

        Raises ``LeaseLost`` if the lease passed to another claimant.
        """
        token = self._owner_token("complete")
        p.check_json(result)
        self._stop_extending()
        if self.lost:
            raise errors.LeaseLost(f"the lease of {self.key!r} in {self.namespace} was taken over")
        try:
            self.completion = self._client.complete(self.namespace, self.key, token, result)
        except (errors.NotOwner, errors.NotFound):
            self._lost.set()
            raise errors.LeaseLost(
                f"the lease of {self.key!r} in {self.namespace} was taken over before complete"
            ) from None
        self._done = True
        return self.completion

    def release(self) -> p.Transition:
        """Releases the claim now (the key is claimable again at once)."""
        token = self._owner_token("release")
        self._stop_extending()
        answer = self._client.release(self.namespace, self.key, token)
        self._done = True
        return answer

    def _owner_token(self, what: str) -> str:
        if not isinstance(self.answer, p.Acquired):
            raise RuntimeError(f"only the owner of a claim can {what} it (this claim is a duplicate)")
        if self._done:
            raise RuntimeError(f"the claim was already completed or released; cannot {what} it")
        return self.answer.token

    # --- the lease -----------------------------------------------------------------

    def _keep_extending(self, token: str, length: int, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._client.extend(self.namespace, self.key, token, length, _budget=interval)
            except (errors.NotOwner, errors.NotFound):
                log.warning("dedupd: lost the lease of %s/%r", self.namespace, self.key)
                self._lost.set()
                return
            except errors.AlreadyCompleted:
                return
            except Exception as error:  # keep trying until the block ends
                log.warning("dedupd: could not extend %s/%r: %s", self.namespace, self.key, error)

    def _stop_extending(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
