"""The Python consumer of the Kafka example: one member of the consumer
group (confluent-kafka), applying each payment at most once in effect
through dedupd (the `dedupd` client's `claim` context manager).

For each record: log that it was delivered; claim its payment id with this
process's claimant, letting the server wait for another holder; when
acquired, append the payment to the ledger and complete the claim; then,
and only then, store the record's offset for the next auto-commit. A
duplicate that is completed is acknowledged without touching the ledger; a
duplicate still in progress is claimed again, never taken as done.

Configuration through the environment: KAFKA_BOOTSTRAP, KAFKA_TOPIC,
KAFKA_GROUP, DEDUPD_URL, LEDGER, EVENTS, CONSUMER_NAME, APPLY_MS,
DEDUPD_NAMESPACE, LEASE_SECS (see examples/kafka/README.md).
"""
import json
import os
import signal
import sys
import time
import uuid
from datetime import datetime, timezone

import dedupd
from confluent_kafka import Consumer, KafkaException


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def append_line(path: str, record: dict) -> None:
    """One write(2) on a file opened O_APPEND: lines of both consumers
    interleave whole, and a SIGKILL loses none that was written."""
    data = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def ledger_has(path: str, payment_id: str) -> bool:
    try:
        with open(path) as f:
            for line in f:
                try:
                    if json.loads(line).get("payment_id") == payment_id:
                        return True
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return False


def main() -> int:
    e = os.environ
    namespace = e.get("DEDUPD_NAMESPACE", "payments")
    lease_secs = int(e.get("LEASE_SECS", "5"))
    apply_secs = int(e.get("APPLY_MS", "5")) / 1000
    ledger, events = e["LEDGER"], e["EVENTS"]
    # Unique to this process: a restarted consumer is another claimant, so
    # the claim its killed predecessor held is taken over, not re-entered.
    name = f"{e.get('CONSUMER_NAME', 'python')}-{os.getpid()}-{uuid.uuid4().hex}"
    counts = dict(delivered=0, applied=0, duplicate=0, reconciled=0, retried=0, store_errors=0)

    def event(**fields) -> None:
        append_line(events, dict(fields, consumer=name))

    def summary(final: bool) -> None:
        print(json.dumps(dict(counts, consumer=name, final=final)), flush=True)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))

    consumer = Consumer({
        "bootstrap.servers": e["KAFKA_BOOTSTRAP"],
        "group.id": e["KAFKA_GROUP"],
        "client.id": name,
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": 120000,
        "auto.offset.reset": "earliest",
        # Offsets are stored by hand after the claim completed, and the
        # stored ones committed every second.
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "enable.auto.offset.store": False,
    })
    consumer.subscribe([e["KAFKA_TOPIC"]])
    print(f"python-consumer {name}: consuming {e['KAFKA_TOPIC']} as group {e['KAFKA_GROUP']}",
          file=sys.stderr, flush=True)
    event(event="started", at=now())

    def apply(payment: dict, claim: "dedupd.Claim") -> dict:
        # A takeover (the previous holder's lease passed: it crashed, or
        # hung) first looks whether that holder applied the payment before
        # dying, between its ledger write and its completion: dedupd cannot
        # know that, the ledger can.
        if claim.answer.takeover and ledger_has(ledger, payment["payment_id"]):
            return {"by": name, "reconciled": True}
        time.sleep(apply_secs)
        at = now()
        append_line(ledger, {"payment_id": payment["payment_id"], "amount_cents": payment.get("amount_cents"),
                             "consumer": name, "applied_at": at})
        return {"by": name, "applied_at": at}

    def handle(payment: dict) -> str:
        payment_id = payment["payment_id"]
        # Until the payment is applied (by anyone); bounded by the process's
        # life (the test stops it).
        while not stop:
            try:
                with client.claim(namespace, payment_id, claimant=name, lease_secs=lease_secs,
                                  wait_secs=10) as claim:
                    if claim.acquired:
                        result = apply(payment, claim)
                        claim.complete(result)
                        return "reconciled" if result.get("reconciled") else "applied"
                    if claim.state == "completed":
                        return "duplicate"
                    why = "still in progress elsewhere"
            except (dedupd.Unavailable, dedupd.LeaseLost, dedupd.ServerError, OSError) as error:
                why = f"{type(error).__name__}: {error}"
            counts["retried"] += 1
            print(f"python-consumer {name}: {payment_id}: {why}; claiming again", file=sys.stderr, flush=True)
            time.sleep(0.5)
        return "stopped"

    last_report = time.monotonic()
    with dedupd.Client(e["DEDUPD_URL"], timeout=40.0) as client:
        while not stop:
            if time.monotonic() - last_report > 5:
                summary(False)
                last_report = time.monotonic()
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                print(f"python-consumer {name}: Kafka error (carrying on): {message.error()}",
                      file=sys.stderr, flush=True)
                continue
            counts["delivered"] += 1
            partition, offset = message.partition(), message.offset()
            try:
                payment = json.loads(message.value())
                payment_id = payment["payment_id"]
            except (ValueError, KeyError, TypeError):
                print(f"python-consumer {name}: record {partition}/{offset} is not a payment; skipped",
                      file=sys.stderr, flush=True)
                continue
            event(event="delivered", partition=partition, offset=offset, payment_id=payment_id)
            outcome = handle(payment)
            if outcome == "stopped":
                break
            counts[outcome] += 1
            event(event=outcome, partition=partition, offset=offset, payment_id=payment_id)
            try:
                # A partition revoked meanwhile refuses the store: the record
                # is redelivered to its new owner, which hears "duplicate".
                consumer.store_offsets(message=message)
            except KafkaException as error:
                counts["store_errors"] += 1
                print(f"python-consumer {name}: storing offset {partition}/{offset} (carrying on): {error}",
                      file=sys.stderr, flush=True)
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as error:
        print(f"python-consumer {name}: final commit (carrying on): {error}", file=sys.stderr, flush=True)
    consumer.close()
    event(event="stopped", at=now())
    summary(True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
