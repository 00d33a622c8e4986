# One image for every process: `tango-resend worker` (default), `web` and `sandbox`.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies from uv.lock, every file checked against its hash; then the package alone.
COPY pyproject.toml uv.lock README.md ./
RUN pip install uv==0.13.9 \
    && uv export --frozen --no-dev --no-emit-project --extra worker --extra web --format requirements-txt > /tmp/locked.txt \
    && pip install --require-hashes --no-deps -r /tmp/locked.txt \
    && pip uninstall -y uv && rm /tmp/locked.txt
COPY worker ./worker
COPY tasks ./tasks
COPY tango_resend ./tango_resend
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent tango

# Celery refuses nothing as root but warns; nothing here needs root, so nothing runs as root.
USER 10001
EXPOSE 8000
CMD ["tango-resend", "worker"]
