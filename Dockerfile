# One image for every StableNew service and the CLI:
#
#   docker build -t stablenew .
#   docker run --rm stablenew serve queue --address 0.0.0.0:50052
#   docker run --rm stablenew health
#   docker inspect --format '{{.State.Health.Status}}' CONTAINER   # the HEALTHCHECK below
#
# Inside a container the services keep their loopback defaults (127.0.0.1:5005x) unless told
# otherwise: set STABLENEW_<SERVICE>_ADDR=0.0.0.0:<port> (or --address) to accept connections
# from outside the container, as docker-compose.yml does.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it. /data belongs to it: a named
# volume mounted there starts out with this ownership.
RUN groupadd --system --gid 10001 stablenew \
 && useradd --system --uid 10001 --gid stablenew --home-dir /home/stablenew --create-home \
        --shell /usr/sbin/nologin stablenew \
 && mkdir -p /data \
 && chown stablenew:stablenew /data

WORKDIR /src

# The dependencies alone, read from pyproject.toml: this layer is rebuilt only when
# pyproject.toml changes, not on every source change.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The project itself, non-editable. The wheel holds only the `stablenew` namespace package
# (gen/, services/ and clients/ merged, see [tool.hatch.build.targets.wheel]); the sources are
# removed afterwards, so nothing runs from /src.
COPY README.md ./
COPY gen ./gen
COPY services ./services
COPY clients ./clients
RUN pip install . \
 && cd / \
 && rm -rf /src \
 && stablenew --help > /dev/null

ENV STABLENEW_DATA_DIR=/data
WORKDIR /data
USER 10001:10001

# bundle, queue, runner, history, and the WebUI emulator of the demo.
EXPOSE 50051 50052 50053 50054 7860

# The container's own health: `stablenew health --self` reads from the container's command
# (PID 1) what it serves and where, and asks it: a service's gRPC health (SERVING), or the
# emulator's API over HTTP. Exit 1 otherwise, an unhealthy container. docker-compose.yml and
# the Kubernetes manifests set checks of their own.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["stablenew", "health", "--self"]

# SIGTERM (docker stop's default) drains calls for STABLENEW_GRACE_SECONDS and exits 0.
ENTRYPOINT ["stablenew"]
CMD ["--help"]
