"""Handlers for runyard's recovery tests: small, stdlib only."""

import os
import time


def nap(context, a=0, pause=0.0):
    print(f"nap a={a} pause={pause}", flush=True)
    time.sleep(pause)
    context.log_result("a", a)


def quick(context):
    print("quick and done", flush=True)
    context.log_result("ok", True)


def spin(context, pidfile=None):
    """Never ends by itself. With `pidfile` (local backend only) it first writes its
    process id and its parent's there, so a test can watch them."""
    if pidfile:
        with open(pidfile, "w") as handle:
            handle.write(f"{os.getpid()} {os.getppid()}\n")
    print("spinning", flush=True)
    while True:
        time.sleep(0.1)


def big(context, megabytes=300):
    """Writes `megabytes` MiB and logs them as an artifact: the runner takes a while to
    store it."""
    chunk = os.urandom(1 << 20)
    with open("big.bin", "wb") as handle:
        for _ in range(megabytes):
            handle.write(chunk)
    print("written", flush=True)
    context.log_artifact("big", local_path="big.bin")
