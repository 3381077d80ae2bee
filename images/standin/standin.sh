#!/bin/sh
# A stand-in service for tests and benchmarks, from static busybox.
#   STANDIN_MODE   ready (default) | crash | never | flap
#   STANDIN_DELAY  seconds before it becomes ready (or crashes); fractions allowed
#   STANDIN_EXIT_CODE  exit code in crash mode (default 3)
#   STANDIN_LIFETIME  once ready, exit with STANDIN_EXIT_CODE after this many seconds
#   STANDIN_PORT   HTTP port once ready (default 8080): GET /health answers 200
#   STANDIN_PATHS  more paths that answer 200 once ready, separated by spaces, e.g.
#                  "/minio/health/live /api/health" (a stand-in for minio or grafana);
#                  "/" or a path ending in "/" answers through its index.html
#   STANDIN_EXTRA_PORTS  more HTTP ports, separated by spaces, serving the same paths,
#                  e.g. "14269" with STANDIN_PATHS="/" (a stand-in for jaeger's admin port)
#   STANDIN_NEEDS  "host:port host:port": at start, before its delay, each must accept a
#                  TCP connection (busybox nc, 1 s timeout), else it logs which one did not
#                  and exits 1, as a real service exits when its database is not there
#                  (busybox nc has no -z here: stdin is /dev/null, so it connects and ends)
# Ready means: /tmp/ready exists (exec probes, the image's HEALTHCHECK), the log line
# "standin ready" (log probes), and httpd listening (http and tcp probes).
mode=${STANDIN_MODE:-ready}
delay=${STANDIN_DELAY:-0}
port=${STANDIN_PORT:-8080}
child=
servers=
stop() { kill $child $servers 2>/dev/null; exit 0; }
trap stop TERM INT
pause() { sleep "$1" & child=$!; wait "$child"; child=; }

# The files behind /health and STANDIN_PATHS (a path ending in / gets its index.html).
pages() {
  echo /www/health
  for path in ${STANDIN_PATHS:-}; do
    case "$path" in
      *..*) ;;
      */) echo "/www${path}index.html" ;;
      /*) echo "/www$path" ;;
      *) echo "/www/$path" ;;
    esac
  done
}
publish() { for page in $(pages); do mkdir -p "${page%/*}"; echo ok > "$page"; done; }
withdraw() { for page in $(pages); do rm -f "$page"; done; }

echo "standin starting: mode=$mode delay=${delay}s port=$port"
for need in ${STANDIN_NEEDS:-}; do
  if ! why=$(nc -w 1 "${need%:*}" "${need##*:}" </dev/null 2>&1); then
    echo "standin needs $need, which does not answer (${why:-no answer within 1 s}): exiting" >&2
    exit 1
  fi
done
[ "$delay" = 0 ] || pause "$delay"
case "$mode" in
  crash)
    echo "standin crashing with code ${STANDIN_EXIT_CODE:-3}" >&2
    exit "${STANDIN_EXIT_CODE:-3}" ;;
  never)
    echo "standin will never be ready"
    while :; do pause 3600; done ;;
esac
mkdir -p /www
publish
touch /tmp/ready
for extra in ${STANDIN_EXTRA_PORTS:-}; do
  httpd -f -p "$extra" -h /www & servers="$servers $!"
done
httpd -f -p "$port" -h /www & child=$!
main=$child
echo "standin ready"
if [ -n "${STANDIN_LIFETIME:-}" ]; then
  # ready for a while, then crash: a service that dies in service
  pause "$STANDIN_LIFETIME"
  kill $main $servers 2>/dev/null
  echo "standin dying after ${STANDIN_LIFETIME}s with code ${STANDIN_EXIT_CODE:-3}" >&2
  exit "${STANDIN_EXIT_CODE:-3}"
fi
if [ "$mode" = flap ]; then
  # ready for a moment, then not, then ready again, forever
  while :; do pause 1; withdraw; rm -f /tmp/ready; pause 1; publish; touch /tmp/ready; done
fi
wait "$main"
