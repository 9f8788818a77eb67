# NVIDIA's Triton with the InferScale sample models baked in:
#
#     docker build -f deploy/triton.Dockerfile -t inferscale/triton:0.1.0 .   # from the repository root
#     docker run --gpus all --shm-size=1g --rm -p 8000-8002:8000-8002 inferscale/triton:0.1.0
#
# 24.12 and not 24.10: the project needs Python >= 3.11 (pyproject.toml) and the python backend
# runs the container's own Python, which is 3.10 up to the Ubuntu 22.04 based releases (24.10
# included) and 3.12 from 24.12 (Ubuntu 24.04).
FROM nvcr.io/nvidia/tritonserver:24.12-py3

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/opt/inferscale/site-packages

WORKDIR /opt/inferscale

COPY pyproject.toml requirements.lock README.md ./
COPY inferscale/ inferscale/
COPY services/ services/
COPY model_repository/ model_repository/

# The python-backend models import inferscale.models, which needs numpy (and scikit-learn to
# train): the project goes in without the services' dependencies (gRPC, pytriton's own Triton,
# matplotlib), every version from requirements.lock. --target keeps it apart from the system
# Python that Ubuntu 24.04 marks externally managed (PEP 668); PYTHONPATH above puts it first for
# the training below and for Triton's python stub, which inherits the server's environment.
RUN pip install --target /opt/inferscale/site-packages -c requirements.lock numpy scikit-learn \
    && pip install --target /opt/inferscale/site-packages --no-deps . \
    && python3 -m inferscale.models.train --repository /opt/inferscale/model_repository \
    && python3 -c "import inferscale.models.digits"

COPY deploy/triton-entrypoint.sh /opt/inferscale/triton-entrypoint.sh
RUN chmod 0755 /opt/inferscale/triton-entrypoint.sh

# The served repository (/models) is seeded from the baked one (configs and trained weights) with
# every file it lacks, so an empty volume, a fresh PersistentVolumeClaim or a checkout whose
# weights were never trained serves the sample models; files already there are never replaced.
ENV MODEL_REPOSITORY=/models \
    MODEL_REPOSITORY_SEED=/opt/inferscale/model_repository

# HTTP (health, /v2), gRPC (the orchestrator) and Prometheus metrics.
EXPOSE 8000 8001 8002

ENTRYPOINT ["/opt/inferscale/triton-entrypoint.sh"]
CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=poll", "--repository-poll-secs=5"]
