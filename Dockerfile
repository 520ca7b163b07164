# AlphaSniper production image: one image, five processes (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The backtest's numba kernels cache their compiled code here (/app is not writable by the app
# user): compiled once per container, then loaded from the cache in well under a second.
ENV NUMBA_CACHE_DIR=/tmp/numba-cache

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# `tbot` console script (same code as `python manage.py tbot`).
RUN pip install --no-deps --no-build-isolation -e . \
 && useradd --system --uid 10001 --home /app alphasniper \
 && mkdir -p /tmp/prometheus /app/backtest-reports && chown alphasniper /tmp/prometheus /app/backtest-reports
USER alphasniper

EXPOSE 9001 5555
CMD ["gunicorn", "alphasniper_project.wsgi", "-c", "gunicorn.conf.py"]
