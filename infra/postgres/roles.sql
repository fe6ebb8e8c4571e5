-- One login role per service, each with only what it needs (docs/security.md). psql script, run once by the
-- superuser: by init.sh on the first start of an empty volume, and by tests/integration/test_postgres_roles.py.
-- Variables (psql -v): the database names mlflow_db, mlflow_auth_db, osml_db; the roles mlflow_role,
-- migrate_role, facade_role, worker_role, relay_role; and each role's password (mlflow_password, ...).
--   mlflow  owns the tracking server's backend store and its user store; nothing in osml
--   migrate owns osml's schema (`osml migrate`); grants.sql, run after each migration, hands out its tables
--   facade  creates and keeps its training-job table; reads nothing else
--   worker  reads/inserts orders_prediction and the outbox (grants.sql); relay reads/marks/prunes the outbox
\set ON_ERROR_STOP on

CREATE ROLE :"mlflow_role" LOGIN PASSWORD :'mlflow_password';
CREATE ROLE :"migrate_role" LOGIN PASSWORD :'migrate_password';
CREATE ROLE :"facade_role" LOGIN PASSWORD :'facade_password';
CREATE ROLE :"worker_role" LOGIN PASSWORD :'worker_password';
CREATE ROLE :"relay_role" LOGIN PASSWORD :'relay_password';
CREATE ROLE :"trainer_role" LOGIN PASSWORD :'trainer_password';
CREATE ROLE :"live_role" LOGIN PASSWORD :'live_password';

CREATE DATABASE :"mlflow_db" OWNER :"mlflow_role";
CREATE DATABASE :"mlflow_auth_db" OWNER :"mlflow_role";
CREATE DATABASE :"osml_db" OWNER :"migrate_role";
-- every role may CONNECT to a new database unless told otherwise
REVOKE ALL ON DATABASE :"mlflow_db", :"mlflow_auth_db", :"osml_db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"osml_db" TO :"facade_role", :"worker_role", :"relay_role", :"trainer_role", :"live_role";

\connect :"osml_db"
-- PostgreSQL 15: the public schema belongs to the database owner and PUBLIC may not create in it
GRANT USAGE ON SCHEMA public TO :"facade_role", :"worker_role", :"relay_role", :"trainer_role", :"live_role";
GRANT CREATE ON SCHEMA public TO :"facade_role";
-- the facade creates the training-job table; the trainers claim and update its rows (osml/job_store.py)
ALTER DEFAULT PRIVILEGES FOR ROLE :"facade_role" IN SCHEMA public GRANT SELECT, UPDATE ON TABLES TO :"trainer_role";
