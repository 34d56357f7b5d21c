"""Request-reply through the client SDK: `Client.predict` one at a time, and `flywheel.aio`'s
`AsyncClient.predict` with 1 and with `--concurrency` requests in flight from one event loop.
Reported per mode: round trips per second, p50 and p99 latency, throughput relative to the
synchronous client, as a markdown table. Every mode runs in the same process against the same
stack, one after the other, so the ratios compare like with like.

Runs against a stack serving the demo's model, reached as `flywheel.connect()` reaches it
(flywheel.toml, FLYWHEEL_* environment), for example:

    flywheel --data-dir /tmp/bench up --demo --broker-port 29092 --registry-port 28081 --metrics-port 39400
    FLYWHEEL_BOOTSTRAP=127.0.0.1:29092 FLYWHEEL_SCHEMA_REGISTRY_URL=http://127.0.0.1:28081 \\
        .venv/bin/python benchmarks/bench_sdk.py [--requests 300] [--concurrency 16]
"""
import argparse
import asyncio
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flywheel  # noqa: E402
import flywheel.aio  # noqa: E402


@dataclass(frozen=True)
class Result:
    mode: str
    in_flight: int
    seconds: float
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def customer(rng: random.Random) -> dict:
    return {f"x{i}": rng.gauss(0, 1) for i in range(8)} | {"plan": rng.choice(["free", "pro", "team"])}


def sync_run(model: str, count: int, rng: random.Random) -> Result:
    with flywheel.connect() as client:
        client.predict(model, customer(rng), timeout=30)        # warm up: readers assigned, schemas cached
        latencies = []
        started = time.perf_counter()
        for _ in range(count):
            t0 = time.perf_counter()
            client.predict(model, customer(rng), timeout=30)
            latencies.append(time.perf_counter() - t0)
        return Result("Client.predict", 1, time.perf_counter() - started, latencies)


async def async_run(model: str, count: int, in_flight: int, rng: random.Random) -> Result:
    async with flywheel.aio.connect() as client:
        await client.predict(model, customer(rng), timeout=30)
        gate = asyncio.Semaphore(in_flight)

        async def one() -> float:
            async with gate:
                t0 = time.perf_counter()
                await client.predict(model, customer(rng), timeout=30)
                return time.perf_counter() - t0
        started = time.perf_counter()
        latencies = await asyncio.gather(*(one() for _ in range(count)))
        return Result("AsyncClient.predict", in_flight, time.perf_counter() - started, list(latencies))


def table(results: list[Result]) -> str:
    base = results[0].per_second
    rows = ["| mode | in flight | round trips/s | p50 ms | p99 ms | vs sync |", "|---|---:|---:|---:|---:|---:|"]
    rows += [f"| {r.mode} | {r.in_flight} | {r.per_second:.1f} | {r.quantile(0.5) * 1000:.1f} | "
             f"{r.quantile(0.99) * 1000:.1f} | {r.per_second / base:.2f}x |" for r in results]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="churn")
    parser.add_argument("--requests", type=int, default=300, help="round trips per mode")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight in the last mode")
    args = parser.parse_args()
    rng = random.Random(7)
    results = [sync_run(args.model, args.requests, rng),
               asyncio.run(async_run(args.model, args.requests, 1, rng)),
               asyncio.run(async_run(args.model, args.requests, args.concurrency, rng))]
    print(table(results))


if __name__ == "__main__":
    main()
