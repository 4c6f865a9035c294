#!/bin/bash
# The images' HEALTHCHECK: GET /v2/health/ready (KServe v2: 200 once every model is loaded) on
# 127.0.0.1:${KILN_HEALTH_PORT:-8501}, with bash's /dev/tcp, so the serving image needs no HTTP
# client. Exit 0 healthy, 1 not.
exec 3<>"/dev/tcp/127.0.0.1/${KILN_HEALTH_PORT:-8501}" || exit 1
printf 'GET /v2/health/ready HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
IFS= read -r -t 5 status <&3 || exit 1
case "$status" in
    "HTTP/1."?" 200"*) exit 0 ;;
    *) exit 1 ;;
esac
