"""Handlers for runyard's hyper-parameter and pipeline tests: small, stdlib only.

Every handler notes when it starts and ends: as the results `start` and `end`,
and, when the run has a `journal` param (an absolute path; local backend only),
as a line of JSON appended to that file, so a test can tell what never started.
"""

import hashlib
import json
import os
import time


def _journal(context, what, **extra):
    path = context.get_param("journal")
    if not path:
        return
    line = json.dumps({"run": context.name, "what": what, "time": time.time(), **extra})
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(descriptor, (line + "\n").encode())
    finally:
        os.close(descriptor)


def score(context, a=0, b=0, pause=0.0, fail_on=(), slow_from=None):
    start = time.time()
    _journal(context, "start", a=a, b=b)
    if slow_from is not None and a >= slow_from:
        print(f"going to sleep a={a}", flush=True)
        time.sleep(120)
    time.sleep(pause)
    if a in fail_on:
        raise ValueError(f"a={a} fails on purpose")
    context.log_results({
        "a": a,
        "b": b,
        "loss": round(abs(a - 2) + b / 100, 4),
        "accuracy": round(1 / (1 + abs(a - 3)) - b / 1000, 4),
        "start": start,
        "end": time.time(),
    })
    context.log_artifact("model", body=f"model a={a} b={b}\n")


def nap(context, pause=0.0):
    start = time.time()
    _journal(context, "start")
    time.sleep(pause)
    context.log_results({"start": start, "end": time.time()})


def payload(size):
    """The bytes `produce` writes: binary, and different for every size."""
    return hashlib.sha256(str(size).encode()).digest() * size + bytes(range(256))


def produce(context, size=100):
    start = time.time()
    _journal(context, "start")
    with open("data.bin", "wb") as handle:
        handle.write(payload(size))
    context.log_artifact("data", local_path="data.bin")
    context.log_results({"size": size, "start": start, "end": time.time()})


def transform(context, data):
    _journal(context, "start")
    read = data.get()
    with open("out.bin", "wb") as handle:
        handle.write(read[::-1])
    context.log_artifact("out", local_path="out.bin")
    context.log_results({"in_sha": "sha256:" + hashlib.sha256(read).hexdigest(),
                         "in_size": len(read)})


def consume(context, data):
    _journal(context, "start")
    read = data.get()
    context.log_results({"last_sha": "sha256:" + hashlib.sha256(read).hexdigest(),
                         "last_size": len(read)})


def fail(context):
    _journal(context, "start")
    raise RuntimeError("this step fails on purpose")


def levels(context, x, p):
    _journal(context, "start")
    context.log_results({
        "arg_x": x,
        "arg_p": p,
        "get_param_x": context.get_param("x"),
        "levels": {level: context.get_params(level)
                   for level in ("project", "pipeline", "job", "override", "step")},
    })
