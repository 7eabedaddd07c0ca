"""Recording runs: the results branch (git plumbing), the artifact store, and which
runner a run belongs to.

It may import project (for the model); never plan, build, run or anything above.
"""
