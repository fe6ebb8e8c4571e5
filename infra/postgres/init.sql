-- Runs once, when the PostgreSQL volume is empty (docker-entrypoint-initdb.d), as POSTGRES_USER.
-- mlflow: the tracking server's backend store (runs, Model Registry); the server creates its own tables.
-- osml:   the facade's training jobs and the worker's orders_prediction + outbox (`osml migrate`).
CREATE DATABASE mlflow;
CREATE DATABASE osml;
