#!/bin/bash
# Least-privilege databases for contactrank (docker-compose.yml; docs/airflow.md, "Production topology").
#
#   role airflow  LOGIN, no other attribute  owns database airflow       (Airflow metadata)
#   role mlflow   LOGIN, no other attribute  owns databases mlflow        (MLflow backend store)
#                                                       and mlflow_auth   (MLflow basic-auth users)
#
# PUBLIC loses CONNECT/TEMP on the three databases, so each role reaches only its own. The passwords
# are read from files (compose secrets), never from the command line or the environment:
#   $CONTACTRANK_SECRETS_DIR/airflow_db_password, $CONTACTRANK_SECRETS_DIR/mlflow_db_password
#
# Idempotent: it runs from /docker-entrypoint-initdb.d on a fresh volume (socket, as the superuser)
# and as the one-shot `postgres-init` on every `docker-compose up` (TCP, PGHOST/PGUSER and the
# superuser password from PGPASSWORD_FILE), which also applies a rotated password.
set -euo pipefail

secrets_dir="${CONTACTRANK_SECRETS_DIR:-/run/secrets}"
for name in airflow_db_password mlflow_db_password; do
    if [ ! -s "$secrets_dir/$name" ]; then
        echo "postgres init: the secret $secrets_dir/$name is missing or empty" >&2
        exit 1
    fi
done
if [ -n "${PGPASSWORD_FILE:-}" ]; then
    PGPASSWORD="$(cat "$PGPASSWORD_FILE")"
    export PGPASSWORD
fi

psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --dbname postgres \
    -v airflow_pw_file="$secrets_dir/airflow_db_password" \
    -v mlflow_pw_file="$secrets_dir/mlflow_db_password" <<'SQL'
-- the file contents go into psql variables (backquotes), never onto a command line
\set airflow_pw `tr -d '\r\n' < :'airflow_pw_file'`
\set mlflow_pw `tr -d '\r\n' < :'mlflow_pw_file'`

SELECT format('CREATE ROLE %I LOGIN', r)
  FROM unnest(ARRAY['airflow', 'mlflow']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec

ALTER ROLE airflow WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD :'airflow_pw';
ALTER ROLE mlflow WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD :'mlflow_pw';

SELECT format('CREATE DATABASE %I OWNER %I', d, o)
  FROM (VALUES ('airflow', 'airflow'), ('mlflow', 'mlflow'), ('mlflow_auth', 'mlflow')) AS v (d, o)
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d) \gexec

ALTER DATABASE airflow OWNER TO airflow;
ALTER DATABASE mlflow OWNER TO mlflow;
ALTER DATABASE mlflow_auth OWNER TO mlflow;
REVOKE ALL ON DATABASE airflow, mlflow, mlflow_auth FROM PUBLIC;
SQL
echo "postgres init: roles airflow, mlflow and their databases are in place"
