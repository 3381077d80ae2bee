# ollamatopo itself as an image; run it with the Docker socket mounted:
#   docker run --rm -v /var/run/docker.sock:/var/run/docker.sock -v $PWD/config:/config IMAGE up
# BASE is any image with Python 3.11+ and pip (a build argument, so it can be built offline
# from a locally made base image).
ARG BASE=python:3.11-slim
FROM ${BASE}
WORKDIR /opt/ollamatopo
COPY pyproject.toml README.md ./
COPY ollamatopo ./ollamatopo
RUN python3 -m pip install --no-cache-dir . && useradd --system --no-create-home ollamatopo || true
ENV OLLAMATOPO_PLAN=/config/topology.yaml OLLAMATOPO_STATE_DIR=/var/lib/ollamatopo
ENTRYPOINT ["python3", "-m", "ollamatopo"]
CMD ["up"]
