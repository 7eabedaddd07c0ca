"""Handlers for runyard's diff tests: results follow the params and the input's rows."""


def fit(context, points, depth=1, scale=1):
    rows = len(points.get().decode().splitlines()) - 1
    context.log_results({"accuracy": round(0.1 * depth * scale + rows / 100, 4),
                         "loss": round(1 / (depth * scale), 4), "rows": rows})


def once(context, scale=1):
    context.log_results({"loss": round(1 / scale, 4), "model": f"v{scale}"})
