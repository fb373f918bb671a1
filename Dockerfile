# Shoka (書架) application image: one image for every process of compose.yaml
# (staff console + internal API, OPAC, RQ worker, scheduler, and one-shot CLI commands).
#
#   docker build -t shoka .
#   docker run --rm shoka shoka --help
#
# The process to run is the command: `shoka run staff` (default), `shoka run opac`,
# `shoka run worker`, `shoka run scheduler`, `shoka migrate`, `shoka doctor`, ...
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged account owns the data directory and runs every process.
RUN groupadd --system --gid 10001 shoka \
 && useradd --system --uid 10001 --gid shoka --home-dir /var/lib/shoka --no-create-home \
            --shell /usr/sbin/nologin shoka \
 && mkdir -p /var/lib/shoka/logs \
 && chown -R shoka:shoka /var/lib/shoka

WORKDIR /opt/shoka

# Dependencies first, pinned by constraints.txt (the same pins script/bootstrap uses).
COPY pyproject.toml constraints.txt README.md ./
COPY api/ api/
COPY indexer/ indexer/
COPY opac/ opac/
COPY staff/ staff/
COPY workers/ workers/
COPY devices/ devices/
RUN pip install -c constraints.txt . \
 && rm -rf build *.egg-info

ENV SHOKA_HOST=0.0.0.0 \
    SHOKA_DATA_DIR=/var/lib/shoka

USER shoka:shoka
WORKDIR /var/lib/shoka

# 8000: OPAC (public, behind the TLS proxy). 8001: staff console + internal API (internal network only).
EXPOSE 8000 8001

CMD ["shoka", "run", "staff"]
