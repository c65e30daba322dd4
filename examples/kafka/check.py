"""The check at the end of examples/kafka/test: reads what the producer
sent, the ledger and the consumers' event logs, prints the counts, and
fails unless every payment is in the ledger exactly once.

    python3 check.py PRODUCER_JSON LEDGER EVENTS...

The event logs are written one line per event as it happens (O_APPEND, one
write each), so a consumer killed with SIGKILL has logged every record it
was delivered and every outcome it reached before the kill; only its
summary line on exit is missing.
"""
import collections
import json
import sys


def read_lines(path):
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                print(f"{path}: a torn line (written when its writer was killed): {line!r}")
    return rows


def main() -> int:
    producer = json.load(open(sys.argv[1]))
    ledger = read_lines(sys.argv[2])
    events = [e for path in sys.argv[3:] for e in read_lines(path)]
    count = producer["sent"]

    delivered = [e for e in events if e["event"] == "delivered"]
    seen = collections.Counter((e["partition"], e["offset"]) for e in delivered)
    outcomes = collections.Counter(e["event"] for e in events if e["event"] in ("applied", "duplicate", "reconciled"))
    by_consumer = collections.defaultdict(collections.Counter)
    for e in events:
        by_consumer[e["consumer"]][e["event"]] += 1
    rows = collections.Counter(r["payment_id"] for r in ledger)
    expected = {f"pay-{n}" for n in range(1, count + 1)}
    missing = sorted(expected - rows.keys(), key=lambda k: int(k[4:]))
    twice = sorted((k for k, n in rows.items() if n > 1), key=lambda k: int(k[4:]))
    strangers = sorted(rows.keys() - expected)

    print(f"sent:               {count} payments")
    print(f"re-sent:            {producer['resent']} (as new records: {producer['records']} records in all)")
    print(f"delivered:          {len(delivered)} records to the consumers (from the event logs, "
          "which a SIGKILLed consumer wrote up to its kill)")
    print(f"redelivered:        {sum(n - 1 for n in seen.values())} (the same partition and offset again, "
          f"{sum(1 for n in seen.values() if n > 1)} records)")
    print(f"distinct records:   {len(seen)} of {producer['records']}")
    print(f"applied:            {outcomes['applied']} (ledger rows: {len(ledger)})")
    print(f"answered duplicate: {outcomes['duplicate']}")
    print(f"reconciled:         {outcomes['reconciled']} (taken over after the kill, found already in the ledger)")
    for consumer, counter in sorted(by_consumer.items()):
        print(f"  {consumer[:40]}: " + ", ".join(f"{k} {v}" for k, v in sorted(counter.items())))
    print(f"ledger:             {len(rows)} distinct payments, {len(missing)} missing, {len(twice)} applied twice"
          + (f", {len(strangers)} unknown" if strangers else ""))
    problems = []
    if missing:
        problems.append(f"{len(missing)} payments never applied, e.g. {missing[:5]}")
    if twice:
        problems.append(f"{len(twice)} payments applied more than once, e.g. "
                        + ", ".join(f"{k} x{rows[k]}" for k in twice[:5]))
    if strangers:
        problems.append(f"ledger rows for unknown payments: {strangers[:5]}")
    if outcomes["applied"] != len(ledger):
        # A consumer killed between its ledger write and its event line.
        print(f"note: {len(ledger) - outcomes['applied']} ledger rows have no 'applied' event "
              "(written just before a SIGKILL)")
    if problems:
        for p in problems:
            print(f"FAILED: {p}")
        return 1
    print(f"OK: every one of the {count} payments is in the ledger exactly once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
