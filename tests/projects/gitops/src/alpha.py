"""The alpha function of the GitOps test project: stdlib only."""

import time


def double(context, x=2):
    context.log_result("doubled", x * 2)


def count_notes(context, notes):
    text = notes.get(encoding="utf-8")
    context.log_result("lines", len(text.splitlines()))


def nap(context, seconds=0.0):
    time.sleep(seconds)
    context.log_result("slept", seconds)
