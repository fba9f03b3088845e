#!/bin/sh
# The lake and exports bucket on MinIO, and the user the pipeline signs in as (docker-compose.yml,
# profile `celery`; docs/airflow.md, "Scale-out").
#
#   bucket $CONTACTRANK_BUCKET                 (the lake and the exports: CONTACTRANK_LAKE_URI ...)
#   user   <aws_access_key_id of s3_credentials>  with a policy on that bucket only
#
# Secrets are read from files (compose secrets) into the environment of mc, never onto a command
# line: the root password from /run/secrets/minio_root_password, the pipeline user's keys from
# /run/secrets/s3_credentials (the AWS shared-credentials file the tasks read as ~/.aws/credentials).
# Idempotent: the one-shot `minio-init` runs it on every `docker-compose up`, which also applies a
# rotated pipeline secret.
set -eu

secrets_dir="${CONTACTRANK_SECRETS_DIR:-/run/secrets}"
bucket="${CONTACTRANK_BUCKET:-contactrank}"
for name in minio_root_password s3_credentials; do
    if [ ! -s "$secrets_dir/$name" ]; then
        echo "minio init: the secret $secrets_dir/$name is missing or empty" >&2
        exit 1
    fi
done

key="" secret=""
while IFS='= ' read -r name value; do
    case "$name" in
        aws_access_key_id) key="$value" ;;
        aws_secret_access_key) secret="$value" ;;
    esac
done < "$secrets_dir/s3_credentials"
if [ -z "$key" ] || [ -z "$secret" ]; then
    echo "minio init: $secrets_dir/s3_credentials needs aws_access_key_id and aws_secret_access_key" >&2
    exit 1
fi

root_password="$(tr -d '\r\n' < "$secrets_dir/minio_root_password")"
MC_HOST_store="http://${MINIO_ROOT_USER}:${root_password}@${MINIO_HOST:-minio:9000}"
export MC_HOST_store

mc mb --ignore-existing "store/$bucket"
policy="$(mktemp)"
cat > "$policy" <<JSON
{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"],
  "Resource": ["arn:aws:s3:::$bucket", "arn:aws:s3:::$bucket/*"]}]}
JSON
mc admin policy create store contactrank-pipeline "$policy"
rm -f "$policy"
# mc reads the secret key from standard input when it is not given as an argument
printf '%s\n' "$secret" | mc admin user add store "$key"
if ! mc admin policy attach store contactrank-pipeline --user "$key"; then
    # attaching fails when the policy is attached already (every `up` after the first)
    mc admin user info store "$key" | grep -q contactrank-pipeline
fi
