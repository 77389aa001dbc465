"""The Airflow side of grip-sync: hooks, task helpers and the DAG builder."""
