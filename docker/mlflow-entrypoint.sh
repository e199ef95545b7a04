#!/bin/sh
# Writes the basic-auth config from the environment (the ini format has no variables), then
# starts the tracking server. Credentials come from the container's environment (.env).
set -eu
: "${MLFLOW_BACKEND_STORE_URI:?}" "${MLFLOW_AUTH_DATABASE_URI:?}" "${MLFLOW_AUTH_ADMIN_PASSWORD:?}"
umask 077
cat > /tmp/basic_auth.ini <<INI
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = 60
INI
export MLFLOW_AUTH_CONFIG_PATH=/tmp/basic_auth.ini
exec mlflow server --host 0.0.0.0 --port 5000 --app-name basic-auth \
    --backend-store-uri "${MLFLOW_BACKEND_STORE_URI}" \
    --serve-artifacts --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/var/lib/mlflow/artifacts}" \
    --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow,mlflow:5000,localhost,localhost:5000,127.0.0.1,127.0.0.1:5000}" \
    "$@"
