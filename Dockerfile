# One image for every service of docker-compose.yml: the Dask scheduler, the workers, the sweep client
# (they must run the same versions of Python, dask/distributed and pipeline) and, built with
# EXTRA_PACKAGES=jupyterlab, the notebook server.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Only what the package and its sweeps need (not .venv, results/ or .git of the build context).
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY sweeps ./sweeps

# bokeh serves the scheduler's dashboard (port 8787); without it the dashboard is off.
ARG EXTRA_PACKAGES=""
RUN pip install --no-cache-dir . "bokeh>=3.1" ${EXTRA_PACKAGES}

CMD ["hessweep", "--help"]
