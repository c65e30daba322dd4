"""What the sync and the async client share: the answers' types, key
encoding, request bodies, answer parsing and the retry schedule.

Nothing here does I/O; ``_sync`` and ``_async`` drive these pieces with
``httpx.Client`` / ``time.sleep`` and ``httpx.AsyncClient`` / ``asyncio.sleep``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Dict, Optional, Tuple, Type, Union
from urllib.parse import quote

import httpx

from . import errors

__version__ = "0.1.0"
USER_AGENT = f"dedupd-python/{__version__}"

DEFAULT_TIMEOUT_SECS = 10.0
DEFAULT_RETRY_BUDGET_SECS = 30.0
# A Retry-After longer than this is shortened: the budget, not the server,
# bounds how long a caller waits.
MAX_RETRY_AFTER_SECS = 10.0
# Backoff for failures that carry no Retry-After (transport failures).
FIRST_BACKOFF_SECS = 0.05
MAX_BACKOFF_SECS = 2.0
# The server holds a claim with wait_secs for at most this long.
MAX_WAIT_SECS = 30


# --- answers -----------------------------------------------------------------


@dataclass(frozen=True)
class Acquired:
    """201: the caller owns the key. Do the work, then ``complete`` (or ``release``)."""

    token: str
    expires_at: datetime
    lease_expires_at: Optional[datetime]
    takeover: bool
    state: str = "in_progress"
    #: The claimant this claim was made with (generated when none was given).
    #: Claiming again with it returns this token while the claim is in
    #: progress; it is a recovery credential, so it is kept out of ``repr``.
    claimant: Optional[str] = field(default=None, repr=False)
    #: The lease length in seconds as the server granted it (from the answer's
    #: ``Date`` header), when known.
    lease_secs: Optional[int] = None

    @property
    def acquired(self) -> bool:
        return True


@dataclass(frozen=True)
class Duplicate:
    """409: another claimant holds the key.

    ``state == "completed"``: the work is done and ``result`` holds what the
    winner stored (``None`` if it stored none). ``state == "in_progress"``:
    someone is doing it now; do not acknowledge, retry after ``retry_after``
    seconds (the owner may fail and its lease then passes to you).
    """

    state: str
    result: Any = None
    completed_at: Optional[datetime] = None
    lease_expires_at: Optional[datetime] = None
    retry_after: Optional[float] = None
    holder: Optional[str] = None
    expires_at: Optional[datetime] = None

    @property
    def acquired(self) -> bool:
        return False

    @property
    def completed(self) -> bool:
        return self.state == "completed"

    @property
    def in_progress(self) -> bool:
        return self.state == "in_progress"


ClaimAnswer = Union[Acquired, Duplicate]


@dataclass(frozen=True)
class Transition:
    """200 after complete (``outcome == "completed"``), release (``"released"``) or extend (``"extended"``)."""

    outcome: str
    state: Optional[str] = None
    expires_at: Optional[datetime] = None
    lease_expires_at: Optional[datetime] = None
    completed_at: Optional[datetime] = None
    result: Any = None


@dataclass(frozen=True)
class ClaimInfo:
    """200 of a read (``get``): the claim's state and times, never its token."""

    state: str
    claimed_at: datetime
    expires_at: datetime
    lease_expires_at: Optional[datetime] = None
    completed_at: Optional[datetime] = None
    result: Any = None
    fingerprint: Optional[str] = None
    holder: Optional[str] = None


def holder_label(claimant: str, token_name: Optional[str] = None) -> str:
    """The ``holder`` label the service shows for a claim made with ``claimant``.

    With auth on, pass the name of your bearer token as listed in the
    service's auth file (the stored claimant is ``<token name>/<claimant>``).
    """
    stored = claimant if token_name is None else f"{token_name}/{claimant}"
    digest = hashlib.sha256(b"dedupd holder\0" + stored.encode("utf-8")).hexdigest()
    return "h:" + digest[:16]


def new_claimant() -> str:
    """A fresh, unguessable claimant id for one logical claim."""
    return "py-" + uuid.uuid4().hex


# --- paths -----------------------------------------------------------------------


def encode_segment(value: str, what: str = "key") -> str:
    """Percent-encodes ``value`` byte by byte of its UTF-8: every byte outside
    ``A-Za-z0-9-._~`` (so ``/``, ``%``, space, ``+``, ``?``, ``#``, NUL...)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if value == "":
        raise ValueError(f"the {what} must not be empty")
    if value in (".", ".."):
        # URL libraries (httpx among them) remove dot segments, so the
        # request would reach another resource. The service accepts these
        # keys only in a batch body or from raw HTTP clients.
        raise ValueError(
            f"the {what} {value!r} cannot be sent in a URL path: HTTP libraries remove dot "
            "segments (use the batch endpoint or a raw HTTP client for it)"
        )
    return quote(value.encode("utf-8"), safe="")


def claim_path(namespace: str, key: str, action: Optional[str] = None) -> str:
    path = f"/v1/namespaces/{encode_segment(namespace, 'namespace')}/claims/{encode_segment(key)}"
    return path if action is None else f"{path}/{action}"


# --- bodies --------------------------------------------------------------------


def claim_body(
    *,
    claimant: str,
    ttl_secs: Optional[int],
    lease_secs: Optional[int],
    fingerprint: Optional[str],
    wait_secs: Optional[int],
    complete: bool,
) -> Dict[str, Any]:
    body: Dict[str, Any] = {"claimant": claimant}
    if ttl_secs is not None:
        body["ttl_secs"] = ttl_secs
    if lease_secs is not None:
        body["lease_secs"] = lease_secs
    if fingerprint is not None:
        body["fingerprint"] = fingerprint
    # Only sent when it asks for a wait: servers without the option refuse
    # the field.
    if wait_secs:
        body["wait_secs"] = wait_secs
    if complete:
        body["complete"] = True
    return body


def check_json(result: Any) -> Any:
    """Refuses a result that is not JSON-serialisable, before anything is sent."""
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"the result must be JSON-serialisable: {error}") from None
    return result


# --- answers ----------------------------------------------------------------------


_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$")


def parse_time(value: Any) -> Optional[datetime]:
    """An RFC 3339 time (any number of fraction digits) as an aware datetime."""
    if value is None:
        return None
    match = _TIME.match(str(value))
    if not match:
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    date, clock, fraction, offset = match.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    offset = "+00:00" if offset in ("Z", "z") else offset
    return datetime.fromisoformat(f"{date}T{clock}.{micros}{offset}").astimezone(timezone.utc)


def parse_retry_after(headers: Mapping[str, str]) -> Optional[float]:
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _server_date(headers: Mapping[str, str]) -> Optional[datetime]:
    value = headers.get("date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Retry:
    """A retryable answer (502/503/504): wait ``retry_after`` seconds if given."""

    retry_after: Optional[float]
    description: str
    problem_type: Optional[str] = None
    detail: Optional[str] = None


_PROBLEMS: Dict[int, Type[errors.ProblemError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    422: errors.FingerprintMismatch,
}

RETRY_STATUSES = (502, 503, 504)


class Scrubber:
    """Removes the bearer token from any text before it is stored in an exception."""

    def __init__(self, token: Optional[str]) -> None:
        self._secrets = [s for s in (token, f"Bearer {token}" if token else None) if s]

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "[redacted]")
        return text

    def __repr__(self) -> str:
        return "Scrubber()"


def _json_body(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def refusal(
    status: int, headers: Mapping[str, str], content: bytes, scrub: Scrubber
) -> Union[Retry, errors.ProblemError]:
    """What a non-success answer means: a Retry, or the exception to raise."""
    body = _json_body(content)
    problem = body if isinstance(body, dict) else {}
    ptype = scrub(str(problem.get("type", "about:blank")))
    title = scrub(str(problem.get("title", f"HTTP {status}")))
    if "detail" in problem:
        detail = scrub(str(problem["detail"]))
    else:
        detail = scrub(content[:200].decode("utf-8", "replace")) or f"HTTP {status}"
    if status in RETRY_STATUSES:
        return Retry(
            retry_after=parse_retry_after(headers),
            description=f"{status} {title}: {detail} ({ptype})",
            problem_type=ptype,
            detail=detail,
        )
    cls = _PROBLEMS.get(status)
    if cls is None:
        cls = errors.ServerError if status >= 500 else errors.ProblemError
    return cls(status, ptype, title, detail)


def parse_claim(
    status: int, headers: Mapping[str, str], content: bytes, *, claimant: str, scrub: Scrubber
) -> Union[ClaimAnswer, Retry]:
    if status == 201:
        body = json.loads(content)
        lease_expires_at = parse_time(body.get("lease_expires_at"))
        lease_secs = None
        date = _server_date(headers)
        if lease_expires_at is not None and date is not None:
            lease_secs = max(1, round((lease_expires_at - date).total_seconds()))
        return Acquired(
            token=str(body["token"]),
            expires_at=parse_time(body["expires_at"]),  # type: ignore[arg-type]
            lease_expires_at=lease_expires_at,
            takeover=bool(body.get("takeover", False)),
            state=str(body.get("state", "in_progress")),
            claimant=claimant,
            lease_secs=lease_secs,
        )
    if status == 409:
        body = _json_body(content)
        if isinstance(body, dict) and body.get("outcome") == "duplicate":
            return Duplicate(
                state=str(body["state"]),
                result=body.get("result"),
                completed_at=parse_time(body.get("completed_at")),
                lease_expires_at=parse_time(body.get("lease_expires_at")),
                retry_after=parse_retry_after(headers),
                holder=body.get("holder"),
                expires_at=parse_time(body.get("expires_at")),
            )
    answer = refusal(status, headers, content, scrub)
    if isinstance(answer, Retry):
        return answer
    raise answer


_REFUSED: Dict[str, Type[errors.TransitionRefused]] = {
    "not_owner": errors.NotOwner,
    "already_completed": errors.AlreadyCompleted,
}


def parse_transition(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    action: str,
    attempt: int,
    scrub: Scrubber,
) -> Union[Transition, Retry]:
    if status == 200:
        body = json.loads(content)
        return Transition(
            outcome=str(body["outcome"]),
            state=body.get("state"),
            expires_at=parse_time(body.get("expires_at")),
            lease_expires_at=parse_time(body.get("lease_expires_at")),
            completed_at=parse_time(body.get("completed_at")),
            result=body.get("result"),
        )
    body = _json_body(content)
    if (
        action == "release"
        and attempt > 1
        and (status == 404 or (status == 409 and isinstance(body, dict) and body.get("outcome") == "not_owner"))
    ):
        # An earlier attempt whose answer was lost released it; or the
        # claim passed on or expired meanwhile. Either way this token holds
        # nothing any more, which is what release asks for.
        return Transition(outcome="released")
    if status == 409 and isinstance(body, dict) and "outcome" in body:
        outcome = str(body["outcome"])
        cls = _REFUSED.get(outcome, errors.TransitionRefused)
        raise cls(outcome, scrub(str(body.get("detail", ""))), body)
    answer = refusal(status, headers, content, scrub)
    if isinstance(answer, Retry):
        return answer
    raise answer


def parse_info(status: int, headers: Mapping[str, str], content: bytes, *, scrub: Scrubber) -> Union[ClaimInfo, Retry]:
    if status == 200:
        body = json.loads(content)
        return ClaimInfo(
            state=str(body["state"]),
            claimed_at=parse_time(body["claimed_at"]),  # type: ignore[arg-type]
            expires_at=parse_time(body["expires_at"]),  # type: ignore[arg-type]
            lease_expires_at=parse_time(body.get("lease_expires_at")),
            completed_at=parse_time(body.get("completed_at")),
            result=body.get("result"),
            fingerprint=body.get("fingerprint"),
            holder=body.get("holder"),
        )
    answer = refusal(status, headers, content, scrub)
    if isinstance(answer, Retry):
        return answer
    raise answer


# --- transport failures and the retry schedule ---------------------------------


#: Transport failures after which the request is sent again: the request may
#: or may not have reached the service (connect errors, timeouts, a
#: connection closed before the answer).
RETRY_EXCEPTIONS: Tuple[Type[BaseException], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


def describe_transport_error(error: BaseException, scrub: Scrubber) -> str:
    text = scrub(str(error)) or "no detail"
    return f"{type(error).__name__}: {text}"


class RetrySchedule:
    """When to try again, within a budget of ``budget_secs`` from the first attempt.

    A 503's ``Retry-After`` is honoured (capped at ``MAX_RETRY_AFTER_SECS``);
    without one, exponential backoff with jitter from ``FIRST_BACKOFF_SECS``
    to ``MAX_BACKOFF_SECS``. ``next_delay`` returns None once the budget is
    spent; a delay is shortened to what is left of the budget.
    """

    def __init__(self, budget_secs: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadline = clock() + max(0.0, budget_secs)
        self._backoff = FIRST_BACKOFF_SECS
        self.attempts = 0

    def next_delay(self, retry_after: Optional[float]) -> Optional[float]:
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            return None
        if retry_after is not None:
            delay = min(max(retry_after, 0.0), MAX_RETRY_AFTER_SECS)
        else:
            delay = self._backoff * (0.5 + random.random() / 2)
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECS)
        return min(delay, remaining)


def unavailable(description: str, attempts: int, claimant: Optional[str], last: Optional[Retry]) -> errors.Unavailable:
    return errors.Unavailable(
        f"dedupd gave no answer within the retry budget after {attempts} attempt(s); last: {description}",
        attempts=attempts,
        claimant=claimant,
        problem_type=last.problem_type if last else None,
        detail=last.detail if last else None,
    )


def request_timeout(
    timeout: Union[float, httpx.Timeout, None], wait_secs: Optional[int]
) -> Union[float, httpx.Timeout, None]:
    """The per-request timeout: a claim that asks the server to wait gets that much longer to read."""
    if not wait_secs or timeout is None:
        return timeout
    if isinstance(timeout, httpx.Timeout):
        read = None if timeout.read is None else timeout.read + wait_secs
        return httpx.Timeout(connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool)
    return httpx.Timeout(timeout, read=float(timeout) + wait_secs)


def auth_headers(token: Optional[str]) -> Dict[str, str]:
    headers = {"user-agent": USER_AGENT}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return headers


def lease_interval(acquired: Acquired, lease_secs: Optional[int]) -> Tuple[Optional[int], Optional[float]]:
    """The lease length to extend by, and how often to extend (a third of it).

    ``(None, None)`` when the claim has no lease (claimed with complete=True).
    """
    if acquired.lease_expires_at is None or acquired.state != "in_progress":
        return None, None
    length = lease_secs or acquired.lease_secs
    if length is None:
        now = datetime.now(timezone.utc)
        length = max(1, round((acquired.lease_expires_at - now) / timedelta(seconds=1)))
    return length, max(0.2, length / 3.0)


def wait_chunk(remaining: float) -> int:
    """The wait_secs of one claim in a bounded wait of ``remaining`` seconds."""
    return max(1, min(MAX_WAIT_SECS, int(remaining)))
