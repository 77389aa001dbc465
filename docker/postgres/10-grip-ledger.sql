-- Runs once, when the metadata server's data volume is first created: the grip-sync ledger gets
-- its own role and database beside Airflow's (connection grip_ledger). Demo credentials only.
CREATE ROLE grip LOGIN PASSWORD 'grip-ledger-demo';
CREATE DATABASE grip_ledger OWNER grip ENCODING 'UTF8';
