"""Handlers for the swarm tests: deterministic, small, stdlib only."""

import time


def nap(context, seconds: float = 60):
    print("napping", flush=True)
    time.sleep(seconds)


def secret_nap(context, seconds: float = 4):
    value = context.get_secret("RY_TEST_SECRET")
    context.log_result("length", len(value or ""))
    print("read the secret", flush=True)
    time.sleep(seconds)


def picky(context, x: int = 1):
    if x == 2:
        raise ValueError("two is refused")
    context.log_result("square", x * x)
