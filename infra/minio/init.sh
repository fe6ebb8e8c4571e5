#!/bin/sh
# One-shot (minio/mc image): creates the bucket and a read-only key for training datasets.
# Layout of the bucket: mlartifacts/ (the tracking server's artifact store; only the server writes it, with the
# root credentials) and datasets/ (orders exports referenced as datasetRef=s3://BUCKET/datasets/...).
set -eu
: "${S3_BUCKET:?set S3_BUCKET}"
: "${OSML_DATASETS_ACCESS_KEY:?set OSML_DATASETS_ACCESS_KEY}"
: "${OSML_DATASETS_SECRET_KEY:?set OSML_DATASETS_SECRET_KEY}"

mc alias set osml "${MINIO_URL:-http://minio:9000}" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "osml/$S3_BUCKET"

policy=/tmp/osml-datasets-read.json
cat > "$policy" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::$S3_BUCKET/datasets/*"]},
    {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::$S3_BUCKET"],
     "Condition": {"StringLike": {"s3:prefix": ["datasets/*"]}}}
  ]
}
JSON
mc admin policy create osml osml-datasets-read "$policy"
mc admin user add osml "$OSML_DATASETS_ACCESS_KEY" "$OSML_DATASETS_SECRET_KEY"
# attaching twice is an error; a re-run finds it attached already
mc admin policy attach osml osml-datasets-read --user "$OSML_DATASETS_ACCESS_KEY" \
  || mc admin user info osml "$OSML_DATASETS_ACCESS_KEY" | grep -q osml-datasets-read
echo "bucket $S3_BUCKET ready"
