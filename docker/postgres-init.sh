#!/bin/sh
# First start of the database volume: POSTGRES_DB made `airflow`; MLflow, its users and the
# serving API get their own databases, owned by the same role.
set -eu
for db in mlflow mlflow_auth serving; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname airflow -c "CREATE DATABASE $db OWNER \"$POSTGRES_USER\""
done
