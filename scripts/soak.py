"""Mixed load for N minutes; sample RSS, open fds and pool usage of the gateway (issue 11)."""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import httpx
from _rig import TABLE, start_rig
from prometheus_client.parser import text_string_to_metric_families
from support.faultload import LoadRun


def sample(pid: int, base_url: str) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    in_use = 0.0
    size = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{base_url}/metrics", timeout=10).text):
        for s in family.samples:
            if s.name == "athena_pool_in_use":
                in_use += s.value
            if s.name == "athena_pool_size":
                size += s.value
    return {"rss_mb": round(rss_kb / 1024, 1), "fds": fds, "pool_in_use": in_use, "pool_size": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    args = parser.parse_args()
    rig = start_rig()
    try:
        assert rig.server.proc is not None
        pid = rig.server.proc.pid
        run = LoadRun(rig.server.url, rig.headers, TABLE, threads=args.threads)
        stopper = threading.Thread(target=lambda: (time.sleep(args.minutes * 60), run._stop.set()))
        workers = [
            threading.Thread(target=run._worker, args=(n,), daemon=True)
            for n in range(args.threads)
        ]
        for w in workers:
            w.start()
        stopper.start()
        samples = []
        started = time.monotonic()
        while not run._stop.is_set():
            samples.append({"t": round(time.monotonic() - started), **sample(pid, rig.server.url)})
            print(json.dumps(samples[-1]), flush=True)
            run._stop.wait(args.every)
        for w in workers:
            w.join(30)
        ok = sum(1 for o in run.outcomes if o.status < 400)
        third = max(1, len(samples) // 3)
        first, last = samples[1 : third + 1] or samples[:1], samples[-third:]
        summary = {
            "requests": len(run.outcomes),
            "ok": ok,
            "errors": len(run.outcomes) - ok,
            "req_per_s": round(len(run.outcomes) / (args.minutes * 60), 1),
        }
        for key in ("rss_mb", "fds", "pool_in_use"):
            summary[f"{key}_first_third_avg"] = round(sum(s[key] for s in first) / len(first), 1)
            summary[f"{key}_last_third_avg"] = round(sum(s[key] for s in last) / len(last), 1)
            summary[f"{key}_max"] = max(s[key] for s in samples)
        print(json.dumps(summary, indent=2))
    finally:
        rig.close()


if __name__ == "__main__":
    main()
