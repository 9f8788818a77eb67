#!/bin/sh
# Entry point of deploy/triton.Dockerfile: seeds the served model repository, then runs the command
# (tritonserver and its flags) through NVIDIA's own entry point when the base image has one.
#
#   MODEL_REPOSITORY       the repository Triton serves (a volume or a bind mount), default /models
#   MODEL_REPOSITORY_SEED  the repository baked into the image, with trained weights
#   SEED_MODEL_REPOSITORY  "false" turns seeding off
#
# Seeding copies each file of the seed that the served repository lacks and replaces nothing, so
# models added, changed or retrained in the served repository stay as they are. A link (the text
# models share one entry point) is copied as the file it names.
set -eu

repo="${MODEL_REPOSITORY:-/models}"
seed="${MODEL_REPOSITORY_SEED:-/opt/inferscale/model_repository}"

if [ "${SEED_MODEL_REPOSITORY:-true}" != "false" ] && [ -d "$seed" ]; then
    mkdir -p "$repo"
    if [ -w "$repo" ]; then
        (cd "$seed" && find . \( -type f -o -type l \) ! -path '*/__pycache__/*' -print) | while IFS= read -r file; do
            if [ ! -e "$repo/$file" ]; then
                mkdir -p "$(dirname "$repo/$file")"
                cp -p "$seed/$file" "$repo/$file"
                echo "seeded $repo/${file#./}"
            fi
        done
    else
        echo "$repo is read-only: not seeded from $seed" >&2
    fi
fi

if [ -x /opt/nvidia/nvidia_entrypoint.sh ]; then
    exec /opt/nvidia/nvidia_entrypoint.sh "$@"
fi
exec "$@"
