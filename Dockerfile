# ollamatopo itself as an image. It drives the host's Docker engine through its socket:
#
#   docker run --rm --network host -v /var/run/docker.sock:/var/run/docker.sock \
#       -v /etc/ollamatopo:/etc/ollamatopo:ro IMAGE up
#
# - `--network host`: http and tcp probes reach a service through the port it publishes on
#   the host (127.0.0.1 by default), which only the host's network namespace sees.
# - It runs as root by default. To run as the image's user `ollamatopo` instead, give it the
#   group of the socket: `--user ollamatopo --group-add "$(stat -c %g /var/run/docker.sock)"`.
# - Paths in a plan (bind mounts, env_file) are read by the engine on the host: mount the
#   plan's folder at the same path as on the host, or keep the plan free of bind mounts.
# - Run reports go to /var/lib/ollamatopo (OLLAMATOPO_STATE_DIR): mount a volume there to
#   keep them (`plan` weights the critical path with them).
#
# Built offline, without pip or any index inside: `python images/wheels.py` (or `make
# ollamatopo-image`) puts the wheels of ollamatopo and of its dependencies, made on the host
# and pinned to the versions of the host's virtualenv, into build/wheelhouse of a build
# context with this file, and builds it. By hand, from the repository:
#
#   python images/wheels.py --wheelhouse build/wheelhouse
#   docker build --build-arg BASE=ollamatopo-debian:bookworm -t ollamatopo:local .
#
# BASE is any Debian-like image with python3 >= 3.11 (the venv module is enough: no pip, no
# ensurepip needed); the default is the offline base that images/build.py makes. The
# wheelhouse must match its Python version and C library (images/wheels.py asks the base).
ARG BASE=ollamatopo-debian:bookworm

FROM ${BASE} AS install
COPY build/wheelhouse/ /wheelhouse/
# pip runs straight from its wheel (a zip on sys.path) with the new venv's python, so the
# venv gets ollamatopo and its dependencies from the wheelhouse only, and no pip.
RUN set -eu; \
    python3 -m venv --without-pip /opt/ollamatopo/.venv; \
    set -- /wheelhouse/pip-*.whl; \
    /opt/ollamatopo/.venv/bin/python "$1/pip" install --no-index --find-links /wheelhouse \
        --no-cache-dir --disable-pip-version-check --no-warn-script-location ollamatopo; \
    /opt/ollamatopo/.venv/bin/python -m ollamatopo --help > /dev/null

FROM ${BASE}
ARG VERSION=unknown
COPY --from=install /opt/ollamatopo /opt/ollamatopo
RUN set -eu; \
    useradd --system --user-group --home-dir /var/lib/ollamatopo --no-create-home \
        --shell /usr/sbin/nologin ollamatopo; \
    install -d -o ollamatopo -g ollamatopo -m 0750 /var/lib/ollamatopo /etc/ollamatopo
ENV PATH=/opt/ollamatopo/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OLLAMATOPO_PLAN=/etc/ollamatopo/topology.yaml \
    OLLAMATOPO_STATE_DIR=/var/lib/ollamatopo
LABEL org.opencontainers.image.title="ollamatopo" \
      org.opencontainers.image.description="Async orchestration of a phased multi-container topology on a Docker engine; run with the Docker socket mounted" \
      org.opencontainers.image.version="${VERSION}" \
      ollamatopo.image="ollamatopo"
ENTRYPOINT ["/opt/ollamatopo/.venv/bin/python", "-m", "ollamatopo"]
CMD ["up"]
