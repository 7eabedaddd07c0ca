"""The beta function of the GitOps test project: stdlib only."""


def inc(context, y=1):
    context.log_result("incremented", y + 1)
