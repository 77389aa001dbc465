# The grip-sync Airflow image: the official Airflow 3.3.2 image (Python 3.11) with the pinned
# requirements, the DAGs, the grip library, the integration files and the Grip API sandbox.
# Build it through docker compose (see docs/docker.md).
FROM apache/airflow:3.3.2-python3.11

# The official image installs Python packages as the airflow user, never as root.
USER airflow

# requirements.txt pins the direct dependencies (apache-airflow==3.3.2 among them, so pip keeps
# the image's Airflow); constraints.txt pins everything they pull in, as tested.
COPY --chown=airflow:root requirements.txt constraints.txt /opt/airflow/requirements/
RUN pip install --no-cache-dir \
        -r /opt/airflow/requirements/requirements.txt \
        -c /opt/airflow/requirements/constraints.txt

COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
COPY --chown=airflow:root include/ /opt/airflow/include/
COPY --chown=airflow:root sandbox/ /opt/airflow/sandbox/
COPY --chown=airflow:root docker/airflow-init.sh /opt/airflow/docker/airflow-init.sh

# Folders that compose mounts named volumes on: a new volume takes the ownership of the folder
# it is mounted over, so the airflow user can write to them.
RUN mkdir -p /opt/airflow/var/work /opt/airflow/var/reports /opt/airflow/var/sandbox \
        /opt/airflow/var/demo/drop /opt/airflow/auth

# `import grip` for the sandbox and any plain Python process (Airflow adds plugins/ by itself).
ENV PYTHONPATH=/opt/airflow/plugins \
    GRIP_WORK_DIR=/opt/airflow/var/work \
    GRIP_REPORT_DIR=/opt/airflow/var/reports
