"""Build: the Docker engine, base images and one image per function environment."""
