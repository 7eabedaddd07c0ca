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


def reach(context, host: str = "172.17.0.1", port: int = 5000):
    """Whether a TCP connection to host:port gets anywhere (refused counts: it got there)."""
    import socket

    try:
        socket.create_connection((host, port), timeout=3).close()
        return {"reached": True}
    except ConnectionRefusedError:
        return {"reached": True}
    except OSError as error:
        return {"reached": False, "error": type(error).__name__}
