#!/usr/bin/env bash
# One-off setup of the compose stack, run by the airflow-init service before the other Airflow
# services start: migrate the metadata database, write the admin login of the simple auth
# manager, create the pools the DAGs use. Safe to run on every `docker compose up`.
set -euo pipefail

echo "airflow-init: migrating the metadata database"
airflow db migrate

# The simple auth manager reads user passwords from this JSON file ({"user": "password"}); it
# only generates a random password for a user missing from it. GRIP_ADMIN_PASSWORD is a local
# demo login, not a secret.
passwords_file=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?the compose file sets it}
echo "airflow-init: writing the login of user ${GRIP_ADMIN_USER:-admin} to ${passwords_file}"
mkdir -p "$(dirname "${passwords_file}")"
python -c 'import json, os, sys
print(json.dumps({os.environ.get("GRIP_ADMIN_USER", "admin"): os.environ.get("GRIP_ADMIN_PASSWORD", "admin")}))' \
    > "${passwords_file}"

# Every push to the Grip API runs in this pool, so that concurrent runs share one budget.
echo "airflow-init: creating pool grip_api with ${GRIP_API_POOL_SLOTS:-4} slots"
airflow pools set grip_api "${GRIP_API_POOL_SLOTS:-4}" "Tasks that push to the Grip API"

echo "airflow-init: done"
