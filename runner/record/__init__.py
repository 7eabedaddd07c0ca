"""Recording runs: the results branch (git plumbing) and the artifact store."""
