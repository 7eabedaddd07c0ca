"""Handlers for runyard's run tests: deterministic, small, stdlib only."""

import hashlib
import os
import time


def calc(context, x: int = 1, y: int = 2):
    context.logger.info(f"calc with x={x} y={y}")
    context.log_result("sum", x + y)
    context.log_result("seed", context.get_param("seed"))
    context.log_artifact("report", body=f"x={x} y={y}\n")
    with open("table.txt", "w") as handle:
        handle.write("a b\n")
    context.log_artifact("table", local_path="table.txt")
    return {"product": x * y}


def digests(context):
    for name, item in sorted(context.inputs.items()):
        with open(item.local_path(), "rb") as handle:
            context.log_result(name, "sha256:" + hashlib.sha256(handle.read()).hexdigest())


def fail(context):
    context.logger.info("about to fail")
    raise ValueError("boom on purpose")


def chatty(context, lines: int = 4000):
    """Prints `lines` numbered lines, as fast as it can, a line on its standard error, and
    a last line with no newline; then ends."""
    import sys

    for number in range(lines):
        sys.stdout.write(f"line {number:05d} {'.' * 40}\n")
    sys.stderr.write("on standard error\n")
    sys.stderr.flush()
    sys.stdout.write("the end")


def sleepy(context):
    print("going to sleep", flush=True)
    time.sleep(60)


def hog(context):
    block = bytearray(512 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    context.log_result("survived", True)


def secret(context):
    value = context.get_secret("RY_TEST_SECRET")
    print(f"the secret is {value}", flush=True)
    context.log_result("length", len(value or ""))
    context.log_result("in_environment", "RY_TEST_SECRET" in os.environ)


def whoami(context):
    """What the run may do: who it is, its capabilities, what it can write."""
    with open("/proc/self/status") as handle:
        status = dict(line.split(":\t", 1) for line in handle.read().splitlines() if ":\t" in line)
    code = os.path.dirname(os.path.abspath(__file__))
    return {
        "uid": os.getuid(),
        "cap_eff": status["CapEff"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(),
        "code_writable": os.access(code, os.W_OK),
        "work_writable": os.access(os.getcwd(), os.W_OK),
        "docker_socket": os.path.exists("/var/run/docker.sock"),
    }
