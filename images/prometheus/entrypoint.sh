#!/bin/sh
# Entry point of ollamatopo-prometheus:demo (prometheus from Debian).
# Flags alone are prometheus's (like the upstream image, whose command is only flags).
# prometheus runs in the foreground as the prometheus user; an empty root-owned volume at
# /prometheus is handed to that user first.
set -eu
if [ $# = 0 ] || [ "${1#-}" != "$1" ]; then set -- prometheus "$@"; fi
if [ "$1" = prometheus ] && [ "$(id -u)" = 0 ]; then
  find /prometheus \! -user prometheus -exec chown prometheus:prometheus '{}' +
  exec setpriv --reuid=prometheus --regid=prometheus --init-groups "$@"
fi
exec "$@"
