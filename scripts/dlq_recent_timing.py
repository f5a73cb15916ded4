"""How long `floorwatch dlq recent` takes, and how many of the newest 20 letters it shows, on an empty
dead-letter topic and on one of 30 letters written as the worker writes them (one a batch; on Apache Kafka
each in a transaction). Fresh services on free ports; `--reader FILE` times another copy of
stream_app/ops/dead_letter_reader.py (e.g. `git show REV:stream_app/ops/dead_letter_reader.py > old.py`).

    python scripts/dlq_recent_timing.py --broker embedded|kafka [--reader FILE]
"""
import argparse, importlib.util, statistics, tempfile, time, uuid
from pathlib import Path
from confluent_kafka import Producer
from stream_app.config.settings import Settings
from stream_app.config.kafka_config import producer_config
from stream_app.contracts import DeadLetter
from stream_app.lab.harness import fresh_services
from stream_app.worker.topics import ensure_topics
from stream_app.ops import dead_letter_reader

parser = argparse.ArgumentParser()
parser.add_argument("--broker", choices=["embedded", "kafka"], default="embedded")
parser.add_argument("--reader", type=Path)
args = parser.parse_args()
reader = dead_letter_reader
if args.reader:
    spec = importlib.util.spec_from_file_location("reader", args.reader)
    assert spec is not None and spec.loader is not None
    reader = importlib.util.module_from_spec(spec); spec.loader.exec_module(reader)
letter = DeadLetter(reason="test", source_topic="sensor-readings", received_at="2026-01-01T00:00:00.000Z").model_dump_json().encode()

with tempfile.TemporaryDirectory() as tmp, fresh_services(Settings(), Path(tmp), broker=args.broker) as base:
    for label, letters in (("empty topic", 0), ("30 letters", 30)):
        s = base.model_copy(update={"dlq_topic": f"dlq-timing-{uuid.uuid4().hex[:6]}"}); ensure_topics(s)
        txn = args.broker == "kafka"
        p = Producer(producer_config(s, **({"transactional.id": f"timing-{uuid.uuid4().hex[:6]}"} if txn else {})))
        if txn: p.init_transactions(30)
        for i in range(letters):
            if txn: p.begin_transaction()
            p.produce(s.dlq_topic, value=letter)
            if txn: p.commit_transaction(30)
            else: p.flush(30)
        runs, shown = [], 0
        for _ in range(3):
            t = time.perf_counter(); shown = len(reader.recent_letters(s, 20)); runs.append(time.perf_counter() - t)
        print(f"{args.broker:8} {label:12}: {shown:2} of the newest 20 shown, median {statistics.median(runs):.2f} s of 3 "
              f"({', '.join(f'{r:.2f}' for r in runs)})", flush=True)
