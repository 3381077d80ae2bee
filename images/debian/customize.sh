#!/bin/sh
# mmdebstrap --customize-hook of the base image; $1 is the finished root filesystem.
set -eu
root=$1
# postgresql-15 creates a cluster "15/main" when installed; the postgres image initialises
# its own cluster in $PGDATA on first start instead.
rm -rf "$root/var/lib/postgresql/15" "$root/etc/postgresql/15"
