"""Large mails arriving at the SMTP listener together: peak memory and small-mail latency.

    python -m bench.large_mail [--large 8] [--mib 31]

`--large` mails of about `--mib` MiB each (a short text and a base64 attachment, what a
person sending photos writes) are sent to the listener at once, from this process, while
a small reply is sent every 50 ms. The gateway runs in a child process of its own, so its
peak resident memory (VmHWM) is its alone. A sender refused with a 4xx waits 200 ms and
tries again, as an MTA would (sooner), so every mail is applied in the end.

Two runs in one go: the baseline lets every large mail in at once (`max_concurrent_large`
as high as the number of large mails), the second uses the configured default. The ratio
compares the second with the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

GATEWAY = "camp@example.test"


def large_mail(n: int, mib: int) -> bytes:
    data = base64.encodebytes(os.urandom(mib * 1024 * 1024 * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        (
            f"From: big{n}@example.net\r\nTo: {GATEWAY}\r\nSubject: photos\r\n"
            f"Message-ID: <large-{n}@example.net>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain\r\n\r\nPhotos from the camp.\r\n"
            "--b\r\nContent-Type: image/jpeg\r\n"
            'Content-Disposition: attachment; filename="a.jpg"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        + data
        + b"--b--\r\n"
    )


def small_mail(n: int) -> bytes:
    return (
        f"From: small{n}@example.net\r\nTo: {GATEWAY}\r\nSubject: hello\r\n"
        f"Message-ID: <small-{n}@example.net>\r\n\r\nhello\r\n"
    ).encode()


def deliver(port: int, sender: str, raw: bytes) -> int:
    """Send until accepted; return how many 4xx refusals it took."""
    refusals = 0
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=300) as conn:
                conn.sendmail(sender, [GATEWAY], raw)
            return refusals
        except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
            if not 400 <= exc.smtp_code < 500:
                raise
            refusals += 1
            time.sleep(0.2)


def high_water_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM")


def run(large: int, mib: int, limit: int | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.large_mail", "--serve"]
    if limit is not None:
        command += ["--limit", str(limit)]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    port = int(child.stdout.readline())
    idle_mib = high_water_mib(child.pid)
    mails = [large_mail(n, mib) for n in range(large)]
    refusals: list[int] = []
    started = time.perf_counter()
    senders = [
        threading.Thread(
            target=lambda m=m, n=n: refusals.append(deliver(port, f"big{n}@example.net", m))
        )
        for n, m in enumerate(mails)
    ]
    for thread in senders:
        thread.start()
    latencies: list[float] = []
    n = 0
    while any(t.is_alive() for t in senders):
        begun = time.perf_counter()
        deliver(port, f"small{n}@example.net", small_mail(n))
        latencies.append(time.perf_counter() - begun)
        n += 1
        time.sleep(0.05)
    for thread in senders:
        thread.join()
    elapsed = time.perf_counter() - started
    peak = high_water_mib(child.pid)
    child.stdin.close()
    applied = json.loads(child.stdout.readline())
    child.wait(30)
    ordered = sorted(latencies)
    return {
        "max_concurrent_large": limit if limit is not None else "default",
        "peak_rss_mib": peak,
        "idle_rss_mib": idle_mib,
        "small_mail_ms": {
            "p50": round(statistics.median(ordered) * 1000, 1),
            "p95": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 1),
            "max": round(ordered[-1] * 1000, 1),
            "n": len(ordered),
        },
        "large_refused_4xx": sum(refusals),
        "all_large_accepted_s": round(elapsed, 2),
        "applied": applied,
    }


async def serve(limit: int | None) -> None:
    """The gateway's listener, until stdin closes; then print how many mails it applied."""
    from gateway.config import ListenerSettings
    from tests.kit import email as kit
    from tests.servers import SmtpSink

    async with SmtpSink() as sink:
        email = kit.settings(GATEWAY, smtp_port=sink.port, listener="smtp")
        extra = {} if limit is None else {"max_concurrent_large": limit}
        listen = ListenerSettings(host="127.0.0.1", port=0, protocol="smtp", **extra)
        email = email.model_copy(update={"listener": listen})
        with tempfile.TemporaryDirectory(dir="/dev/shm") as folder:
            async with kit.gateway(Path(folder) / "gw.db", email, Path(folder) / "t") as gw:
                listener = gw.listener()
                await listener.start()
                print(listener.port, flush=True)
                await asyncio.to_thread(sys.stdin.read)
                await listener.stop()
                rows = await gw.rows("SELECT outcome, COUNT(*) FROM inbox GROUP BY outcome")
                print(json.dumps({r[0]: r[1] for r in rows}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=8)
    parser.add_argument("--mib", type=int, default=31)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--baseline-only", action="store_true", help="old code: no limit")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.limit))
        return
    if args.baseline_only:
        print(json.dumps({"baseline": run(args.large, args.mib, None)}, indent=2))
        return
    baseline = run(args.large, args.mib, args.large)
    bounded = run(args.large, args.mib, None)
    print(
        json.dumps(
            {
                "baseline_all_at_once": baseline,
                "bounded_default": bounded,
                "ratio_peak_rss": round(bounded["peak_rss_mib"] / baseline["peak_rss_mib"], 2),
                "ratio_small_mail_p95": round(
                    bounded["small_mail_ms"]["p95"] / baseline["small_mail_ms"]["p95"], 2
                ),
                "ratio_small_mail_max": round(
                    bounded["small_mail_ms"]["max"] / baseline["small_mail_ms"]["max"], 2
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
