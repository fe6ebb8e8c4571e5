-- Table grants of osml's schema, run by the schema owner (migrate_role) after every `osml migrate`: a table a
-- migration adds is reachable by nobody until it is named here. Idempotent. Variables: worker_role, relay_role,
-- live_role, facade_role.
\set ON_ERROR_STOP on

GRANT SELECT, INSERT ON orders_prediction, outbox TO :"worker_role";
GRANT USAGE ON SEQUENCE outbox_id_seq TO :"worker_role";
GRANT SELECT, UPDATE, DELETE ON outbox TO :"relay_role";
-- live accuracy (osml evaluate-live) reads the stored predictions only
GRANT SELECT ON orders_prediction TO :"live_role";
-- the shadow challenger's rows (serving/shadow.py): written by the facade and by the worker's in-process scorer,
-- read by live accuracy
GRANT INSERT ON orders_prediction_shadow TO :"facade_role", :"worker_role";
GRANT SELECT ON orders_prediction_shadow TO :"live_role";
