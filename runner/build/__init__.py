"""Build: the Docker engine, base images and one image per function environment
(Dockerfiles rendered from templates/).

It may import project; never plan, run, record or anything above them.
"""
