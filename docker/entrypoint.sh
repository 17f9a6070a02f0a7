#!/bin/sh
# The hub's container entrypoint: keys, database, migrations, then the command (default: serve).
#
#   HUB_ENV=production     the token-signing key and the personal-data keyring must exist
#                          (HUB_SIGNING_KEY_FILE, HUB_DATA_KEYS_FILE; default under $HUB_DATA_DIR/keys);
#   HUB_GENERATE_KEYS=yes  creates the missing ones there, on a database never migrated only (back them
#                          up: without the data keys the stored ID and phone numbers cannot be read);
#   HUB_DB_WAIT_SECONDS    how long to wait for the database (default 60);
#   HUB_WORKERS            uvicorn worker processes of the default command (default 2).
set -eu

HUB_DATA_DIR="${HUB_DATA_DIR:-/data}"
WAIT="${HUB_DB_WAIT_SECONDS:-60}"

# Wait for the database; is it new (never migrated)?
revision="$(hub db current --wait "$WAIT")"

if [ "${HUB_ENV:-development}" = "production" ]; then
  HUB_SIGNING_KEY_FILE="${HUB_SIGNING_KEY_FILE:-$HUB_DATA_DIR/keys/signing-key.pem}"
  HUB_DATA_KEYS_FILE="${HUB_DATA_KEYS_FILE:-$HUB_DATA_DIR/keys/data-keys.json}"
  export HUB_SIGNING_KEY_FILE HUB_DATA_KEYS_FILE
  missing=""
  [ -s "$HUB_SIGNING_KEY_FILE" ] || missing="$missing signing-key"
  [ -n "${HUB_DATA_KEYS:-}" ] || [ -s "$HUB_DATA_KEYS_FILE" ] || missing="$missing data-keys"
  if [ -n "$missing" ]; then
    case "$revision" in "database: None "*) new_database=yes ;; *) new_database=no ;; esac
    if [ "${HUB_GENERATE_KEYS:-no}" = "yes" ] && [ "$new_database" = no ]; then
      echo "hub-entrypoint: the keys are missing (missing:$missing) but the database already holds the hub's data:" \
           "new keys could not read it. Restore the keys from their backup (HUB_SIGNING_KEY_FILE, HUB_DATA_KEYS_FILE)." >&2
      exit 64
    fi
    if [ "${HUB_GENERATE_KEYS:-no}" != "yes" ]; then
      echo "hub-entrypoint: HUB_ENV=production needs its keys (missing:$missing). Mount them and set" \
           "HUB_SIGNING_KEY_FILE / HUB_DATA_KEYS_FILE, or start once with HUB_GENERATE_KEYS=yes to create them" \
           "under $HUB_DATA_DIR/keys." >&2
      exit 64
    fi
    umask 077
    case "$missing" in *signing-key*) hub keys signing-key --output "$HUB_SIGNING_KEY_FILE" ;; esac
    case "$missing" in *data-keys*) hub keys data-keys --output "$HUB_DATA_KEYS_FILE" ;; esac
    echo "hub-entrypoint: generated$missing under $(dirname "$HUB_DATA_KEYS_FILE"); back them up now" >&2
  fi
fi

# Migrate (idempotent; concurrent starts take turns on PostgreSQL).
hub db upgrade --wait "$WAIT"

if [ "$#" -eq 0 ]; then
  set -- hub serve --host 0.0.0.0 --port 8080 --workers "${HUB_WORKERS:-2}"
fi
exec "$@"
