# contactrank: one image for every production component (Airflow api-server, scheduler,
# dag-processor, triggerer, workers, and the MLflow tracking server), pinned by constraints.txt.
#   docker build -t contactrank:latest .
FROM python:3.11-slim-bookworm

# celery: the Celery provider and Redis client of the `celery` profile's workers (small; one image for both)
ARG EXTRAS=airflow,postgres,celery
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/contactrank/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/contactrank/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    CONTACTRANK_HOME=/data/contactrank

# libgomp1: LightGBM's OpenMP runtime. tini reaps the task subprocesses Airflow starts.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/contactrank
# Dependencies first (cached while only the code changes), every version from the constraints file.
# The requirement list is read from pyproject.toml ([project] dependencies plus the EXTRAS), so this
# layer needs no package source: new packages or package-dir entries cannot break it.
# mlflow[auth]: Flask-WTF for the MLflow server's basic-auth app (`--app-name basic-auth`).
COPY constraints.txt pyproject.toml ./
RUN python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = p.get('optional-dependencies', {}); \
reqs = list(p['dependencies']) + [r for e in sys.argv[1].split(',') if e for r in extras[e]]; \
print('\n'.join(reqs + ['mlflow[auth]']))" "$EXTRAS" > /tmp/requirements.txt \
 && cat /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt

COPY README.md ./
COPY contactrank/ contactrank/
COPY features/ features/
COPY ml/ ml/
COPY dags/ dags/
COPY plugins/ plugins/
# The MLflow basic-auth configuration and the pipeline-user bootstrap (docker-compose.yml).
COPY deploy/mlflow/ deploy/mlflow/
RUN pip install --no-deps -c constraints.txt . \
 && pip check \
 && useradd --uid 50000 --gid 0 --home-dir "$AIRFLOW_HOME" --create-home airflow \
 && mkdir -p "$CONTACTRANK_HOME" "$AIRFLOW_HOME/.mlflow" "$AIRFLOW_HOME/.aws" \
 && chown -R 50000:0 "$AIRFLOW_HOME" "$CONTACTRANK_HOME"

USER 50000
WORKDIR /opt/airflow
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["airflow", "version"]
