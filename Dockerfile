# One image for every process: `tango-resend worker` (default), `web` and `sandbox`.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY worker ./worker
COPY tasks ./tasks
COPY tango_resend ./tango_resend
RUN pip install --constraint constraints.txt . \
    && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent tango

# Celery refuses nothing as root but warns; nothing here needs root, so nothing runs as root.
USER 10001
EXPOSE 8000
CMD ["tango-resend", "worker"]
