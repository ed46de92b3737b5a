"""Asset locations, resolved from this file rather than the working directory."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKER_IMAGES = REPO_ROOT / "worker_images"
DOCKERFILE = "worker_images/Dockerfile"
LAMBDA_SRC = REPO_ROOT / "lambda_src"
