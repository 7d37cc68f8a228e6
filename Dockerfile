# The xbroker service image, used by docker-compose.yml (`xbroker run`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the package needs, so no local virtualenv or state enters the image.
COPY pyproject.toml README.md* ./
COPY broker/ broker/
COPY routing/ routing/
COPY signing/ signing/
COPY sealing/ sealing/
COPY xta_schemas/ xta_schemas/
COPY monitoring/ monitoring/
RUN pip install . && rm -rf build

# The example settings and directory; the state volume is mounted at /app/.xbroker.
COPY examples/ examples/
RUN useradd --system --uid 10001 --home-dir /app xbroker \
    && mkdir -p /app/.xbroker \
    && chown xbroker /app/.xbroker
USER xbroker

ENV XBROKER_CONFIG=/app/examples/xbroker.toml
EXPOSE 9464
CMD ["xbroker", "run"]
