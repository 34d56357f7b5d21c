"""A user's own model beside the demo, as a new user would add one: a scikit-learn pipeline on
the bundled breast-cancer data imported into the running stack (`register_own_model`), then
requests published at a steady rate through the SDK and every one labelled a few seconds later.

It reads the stack's address from the FLYWHEEL_* environment (`benchmarks/soak.py --own-model`
sets it) and runs until killed, printing a line a minute: requests sent, labels sent.
"""
import argparse
import random
import time
from collections import deque

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier

import flywheel
from flywheel.own_model import register_own_model

MODEL = "tumour"
LABEL_DELAY_S = 5.0


def import_model() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True).frame
    features = data.drop(columns="target")
    estimator = GradientBoostingClassifier(random_state=0).fit(features, data["target"])
    register_own_model(MODEL, "v1", sample=data, estimator=estimator, target="target")
    return data


def publish(data: pd.DataFrame, rate: float) -> None:
    rows = data.drop(columns="target").to_dict("records")
    truth = data["target"].astype(str).tolist()
    pending: deque[tuple[float, str, str]] = deque()
    sent = labelled = 0
    next_at = report_at = time.monotonic()
    with flywheel.connect() as client:
        publisher = client.publisher(MODEL)
        while True:
            now = time.monotonic()
            i = random.randrange(len(rows))
            pending.append((now + LABEL_DELAY_S, publisher.publish(rows[i]), truth[i]))
            sent += 1
            while pending and pending[0][0] <= now:
                _, request_id, label = pending.popleft()
                client.label(request_id, label, model=MODEL)
                labelled += 1
            if now >= report_at:
                print(f"{MODEL}: {sent} requests, {labelled} labels", flush=True)
                report_at = now + 60
            next_at += 1 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=40.0, help="requests/s (default 40)")
    args = p.parse_args()
    publish(import_model(), args.rate)


if __name__ == "__main__":
    main()
