"""Asset locations, resolved from this file rather than the working directory."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "worker_images/Dockerfile"
