#!/usr/bin/env python3
"""A burst of concurrent sign-ins against a running collector: how much memory it takes, how
/healthz answers meanwhile, and what the sign-ins were answered.

    scripts/login-burst.py --url http://127.0.0.1:9850 --pid $(pidof greenops) --logins 200

Each sign-in is a wrong password for an unknown user. With --spread-ips every request carries
its own X-Forwarded-For address (the collector must list 127.0.0.1 in auth.trusted_proxies), so
the per-IP rate limit does not stop them and every one reaches the password check: that measures
the bound on concurrent Argon2 work. Without it they all come from one address, as an attacker
without a botnet would send them. Prints key=value lines (medians and maxima in ms, RSS in MiB).
"""

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from urllib.parse import urlparse


async def request(host, port, method, path, body=b"", headers=None):
    reader, writer = await asyncio.open_connection(host, port)
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Connection: close",
        f"Content-Length: {len(body)}",
        "Content-Type: application/json",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    try:
        return int(answer.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def healthz_ms(host, port):
    started = time.perf_counter()
    status = await request(host, port, "GET", "/healthz")
    return (time.perf_counter() - started) * 1000, status


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, required=True, help="the collector's process id")
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--spread-ips", action="store_true")
    args = parser.parse_args()
    url = urlparse(args.url)
    host, port = url.hostname, url.port

    quiet = [(await healthz_ms(host, port))[0] for _ in range(30)]
    rss_before = rss_mib(args.pid)
    samples, latencies, done = [], [], asyncio.Event()

    async def sample_rss():
        while not done.is_set():
            samples.append(rss_mib(args.pid))
            await asyncio.sleep(0.05)

    async def probe_healthz():
        while not done.is_set():
            ms, status = await healthz_ms(host, port)
            latencies.append(ms if status == 200 else float("inf"))
            await asyncio.sleep(0.1)

    async def login(i):
        body = json.dumps({"username": f"nobody-{i}", "password": "wrong password!"}).encode()
        headers = {"X-Forwarded-For": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"}
        return await request(
            host, port, "POST", "/api/v1/auth/login", body, headers if args.spread_ips else None
        )

    background = [asyncio.create_task(sample_rss()), asyncio.create_task(probe_healthz())]
    started = time.perf_counter()
    statuses = await asyncio.gather(*(login(i) for i in range(args.logins)))
    burst_s = time.perf_counter() - started
    await asyncio.sleep(1)
    done.set()
    await asyncio.gather(*background)
    await asyncio.sleep(5)
    rss_after = rss_mib(args.pid)
    answered = Counter(statuses)
    during = [ms for ms in latencies if ms != float("inf")]
    print(f"logins={args.logins} spread_ips={args.spread_ips} burst_s={burst_s:.2f}")
    print("answers=" + ",".join(f"{k}x{v}" for k, v in sorted(answered.items())))
    print(f"rss_before_mib={rss_before:.1f} rss_peak_mib={max(samples):.1f} rss_after_5s_mib={rss_after:.1f}")
    print(
        f"healthz_quiet_median_ms={statistics.median(quiet):.2f} "
        f"healthz_burst_median_ms={statistics.median(during):.2f} "
        f"healthz_burst_max_ms={max(during):.2f} healthz_failed={len(latencies) - len(during)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
