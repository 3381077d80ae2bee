#!/bin/sh
# Entry point of ollamatopo-postgres:demo (PostgreSQL 15 from Debian).
#   POSTGRES_PASSWORD  the password of POSTGRES_USER (required on first start)
#   POSTGRES_USER      the superuser made on first start (default ollama)
#   POSTGRES_DB        the database made on first start (default: POSTGRES_USER)
#   PGDATA             the cluster (default /var/lib/postgresql/data; may be an empty,
#                      root-owned volume)
# On first start (no $PGDATA/PG_VERSION) it runs initdb as the postgres user, allows
# password logins (scram-sha-256) from any host, listens on all addresses, creates
# POSTGRES_DB and runs /docker-entrypoint-initdb.d/*.sql and *.sh. Then it execs postgres
# in the foreground as the postgres user, so postgres gets the stop signal itself.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=ollama}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export PGDATA

# No command, or only flags: postgres (with those flags).
if [ $# = 0 ] || [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  # An empty volume is owned by root: hand it to postgres, then run again as postgres.
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 0700 "$PGDATA"
  install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  export HOME=/var/lib/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres-entrypoint: set POSTGRES_PASSWORD (the password of $POSTGRES_USER)" >&2
    exit 1
  fi
  echo "postgres-entrypoint: initialising $PGDATA for $POSTGRES_USER/$POSTGRES_DB"
  secret=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$secret"
  initdb --username="$POSTGRES_USER" --pwfile="$secret" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$secret"
  printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\njit = off\n" >> "$PGDATA/postgresql.conf"

  # A private server for the set-up: a socket in its own directory and no TCP, so
  # pg_isready and clients see nothing until the real server starts.
  socket=$(mktemp -d)
  pg_ctl -D "$PGDATA" -w -s -o "-c listen_addresses='' -c unix_socket_directories=$socket" start
  run_sql() { psql -X -q -v ON_ERROR_STOP=1 -h "$socket" -U "$POSTGRES_USER" "$@"; }
  if [ "$POSTGRES_DB" != postgres ]; then
    run_sql -d postgres -v db="$POSTGRES_DB" <<'SQL'
CREATE DATABASE :"db";
SQL
  fi
  for script in /docker-entrypoint-initdb.d/*; do
    case "$script" in
      *.sql) echo "postgres-entrypoint: running $script"; run_sql -d "$POSTGRES_DB" -f "$script" ;;
      *.sh) echo "postgres-entrypoint: running $script"; PGHOST=$socket sh "$script" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -w -s -m fast stop
  rmdir "$socket"
  echo "postgres-entrypoint: initialised"
fi

exec "$@"
