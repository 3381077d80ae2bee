#!/usr/bin/env bash
# Make this host ready for ollamatopo's demo and tests: a Docker engine that answers,
# Debian's static busybox and mmdebstrap for the offline images. Uses the host's own apt
# configuration; names no mirror or registry. Safe to run again.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if [ ! -x /bin/busybox ] || ! dpkg -s busybox-static >/dev/null 2>&1; then
  echo "host-setup: installing busybox-static (for the offline stand-in image)"
  apt_install busybox-static
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "host-setup: installing mmdebstrap (for the offline Debian-based demo images)"
  apt_install mmdebstrap
fi

if ! command -v docker-registry >/dev/null 2>&1; then
  echo "host-setup: installing docker-registry (a registry on 127.0.0.1 for the pull tests)"
  apt_install docker-registry
fi

if timeout 20 docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "host-setup: installing docker.io (the Docker engine)"
  apt_install docker.io
fi
if ! timeout 20 docker info >/dev/null 2>&1; then
  echo "host-setup: starting dockerd in the background (log: /tmp/ollamatopo-dockerd.log)"
  as_root sh -c 'nohup dockerd >/tmp/ollamatopo-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do
    if [ -S /var/run/docker.sock ] && timeout 5 docker info >/dev/null 2>&1; then break; fi
    sleep 1
  done
fi
if ! timeout 20 docker info >/dev/null 2>&1; then
  echo "host-setup: the Docker engine does not answer; see /tmp/ollamatopo-dockerd.log" >&2
  exit 1
fi
