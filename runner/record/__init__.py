"""Recording runs: the typed run and push records and their YAML (model), the results
branch (git plumbing), the artifact store, and which runner a run belongs to.

It may import project (for the project's model); never plan, build, run or anything above.
"""
