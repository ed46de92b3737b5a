#!/bin/sh
# Build step of worker_images/Dockerfile: a virtualenv at /opt/venv from one hash-locked
# requirements file. pip refuses any file whose sha256 is not in the lock, any requirement that
# is not pinned with a hash, and any source distribution (nothing is compiled in the image).
# pip writes the bytecode here: the images run with a read-only root file system.
set -eu
lock=$1
if [ -s /run/secrets/pip-ca ]; then
    # The builder's CA bundle (a TLS-inspecting proxy between the builder and PyPI).
    export PIP_CERT=/run/secrets/pip-ca
fi
python3 -m venv /opt/venv
/opt/venv/bin/pip install --require-hashes --only-binary=:all: -r "$lock"
