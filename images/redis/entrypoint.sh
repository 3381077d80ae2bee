#!/bin/sh
# Entry point of ollamatopo-redis:demo (redis-server from Debian).
# Runs the command; redis-server runs in the foreground as the redis user, in /data (an
# empty root-owned volume is handed to redis first). Without a config file and without
# --protected-mode it adds `--protected-mode no`, so a plan's own command (say
# `redis-server --appendonly yes`) still lets the other containers in.
set -eu
if [ $# = 0 ] || [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
  case " $* " in
    *" --protected-mode "*) ;;
    *) if [ "${2:-}" = "${2%.conf}" ]; then shift; set -- redis-server --protected-mode no "$@"; fi ;;
  esac
  if [ "$(id -u)" = 0 ]; then
    find /data \! -user redis -exec chown redis:redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
  fi
fi
exec "$@"
