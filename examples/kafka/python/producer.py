"""The producer of the Kafka example: N numbered payments, a share of them
sent again as new records with the same payment id, as a producer that
retries after a lost acknowledgement does.

Each record is keyed by its payment id, so a re-send lands on the same
partition but at a new offset: the broker has two records, and only the
payment id says they are one payment.

    python producer.py BOOTSTRAP TOPIC COUNT RESEND_PERCENT SUMMARY_FILE
"""
import json
import random
import sys

from confluent_kafka import Producer


def main() -> int:
    bootstrap, topic, count, resend_percent, summary_file = sys.argv[1:6]
    count, resend_percent = int(count), float(resend_percent)
    rng = random.Random(20261202)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    failed = []

    def delivered(error, message):
        if error is not None:
            failed.append(str(error))

    def send(n: int, amount: int) -> None:
        payment = {"payment_id": f"pay-{n}", "amount_cents": amount}
        for _ in range(100):  # bounded: wait for queue space at most 100 times
            try:
                producer.produce(topic, key=payment["payment_id"], value=json.dumps(payment), on_delivery=delivered)
                return
            except BufferError:
                producer.poll(0.1)
        raise RuntimeError("the producer queue stayed full")

    amounts = {n: rng.randint(100, 100_000) for n in range(1, count + 1)}
    resent = set(rng.sample(range(1, count + 1), round(count * resend_percent / 100)))
    # The "retry" of payment n goes out a few records later, as a new record.
    lag = 7
    for n in range(1, count + lag + 1):
        if n <= count:
            send(n, amounts[n])
        if n - lag in resent:
            send(n - lag, amounts[n - lag])
        producer.poll(0)
    left = producer.flush(60)
    summary = {"sent": count, "resent": len(resent), "records": count + len(resent),
               "undelivered": left, "failed": len(failed)}
    with open(summary_file, "w") as f:
        json.dump(summary, f)
    print(json.dumps(summary), flush=True)
    return 0 if left == 0 and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
