#!/bin/sh
# A stand-in service for tests and benchmarks, from static busybox.
#   STANDIN_MODE   ready (default) | crash | never | flap
#   STANDIN_DELAY  seconds before it becomes ready (or crashes); fractions allowed
#   STANDIN_EXIT_CODE  exit code in crash mode (default 3)
#   STANDIN_PORT   HTTP port once ready (default 8080): GET /health answers 200
# Ready means: /tmp/ready exists (exec probes, the image's HEALTHCHECK), the log line
# "standin ready" (log probes), and httpd listening (http and tcp probes).
mode=${STANDIN_MODE:-ready}
delay=${STANDIN_DELAY:-0}
port=${STANDIN_PORT:-8080}
child=
stop() { [ -n "$child" ] && kill "$child" 2>/dev/null; exit 0; }
trap stop TERM INT
pause() { sleep "$1" & child=$!; wait "$child"; child=; }

echo "standin starting: mode=$mode delay=${delay}s port=$port"
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
echo ok > /www/health
touch /tmp/ready
httpd -f -p "$port" -h /www & child=$!
echo "standin ready"
if [ "$mode" = flap ]; then
  # ready for a moment, then not, then ready again, forever
  while :; do pause 1; rm -f /www/health /tmp/ready; pause 1; echo ok > /www/health; touch /tmp/ready; done
fi
wait "$child"
