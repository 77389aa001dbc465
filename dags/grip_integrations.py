"""One onboarding DAG and one sync DAG for each file in include/integrations/.

Add an integration by adding its YAML file; nothing here changes. Broken files are reported
by grip_integration_errors.py as import errors, and never hide the good ones.
"""

from __future__ import annotations

from pathlib import Path

from grip.airflow.dags import build_all, integrations_dir

# Notifiers to call when a task fails, beside the log summary every failure writes. Plug in
# e-mail or Slack here, for example:
#   from airflow.providers.smtp.notifications.smtp import SmtpNotifier
#   FAILURE_NOTIFIERS = [SmtpNotifier(to="data-team@example.com", from_email="airflow@example.com")]
#   from airflow.providers.slack.notifications.slack import SlackNotifier
#   FAILURE_NOTIFIERS = [SlackNotifier(slack_conn_id="slack", channel="#grip-sync",
#                                      text="{{ ti.dag_id }}.{{ ti.task_id }} failed")]
FAILURE_NOTIFIERS: list = []

DAGS, _BROKEN = build_all(integrations_dir(Path(__file__).resolve().parent), FAILURE_NOTIFIERS)
for _dag in DAGS:
    globals()[_dag.dag_id] = _dag
