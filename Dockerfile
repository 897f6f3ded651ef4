# syntax=docker/dockerfile:1
# Multi-stage: build wheels with the toolchain, run on a slim image as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip
COPY pyproject.toml constraints.txt README.md alembic.ini ./
COPY service ./service
COPY schemas ./schemas
COPY auth ./auth
COPY audit ./audit
RUN pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CREDITSHARE_DATA_DIR=/var/lib/creditshare
RUN groupadd --system creditshare && useradd --system --gid creditshare --home /app creditshare \
    && mkdir -p /var/lib/creditshare && chown creditshare:creditshare /var/lib/creditshare
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER creditshare
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["creditshare", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
