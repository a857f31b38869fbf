#!/bin/sh
# Sends one signed POST /hooks/scan to meshcert: the expiry scan, then a resync of every cluster.
# It is what the Spin cron trigger does every 6 hours, for hosts without that trigger, such as
# SpinKube, where deploy/scan-cronjob.yaml runs this script.
#
# Environment:
#   MESHCERT_URL     the app's base URL, such as http://meshcert.meshcert.svc
#   WEBHOOK_SECRET   the value of the app's webhook_secret variable
#
# Needs sh, openssl and curl. Exits non-zero, with the response on stderr, unless the app
# responds 200. Clusters that fail in the resync do not fail the job: they show in the report's
# sync counts, in the certificates' sync states and in GET /metrics.
set -eu

: "${MESHCERT_URL:?set MESHCERT_URL to the app base URL, such as http://meshcert.meshcert.svc}"
: "${WEBHOOK_SECRET:?set WEBHOOK_SECRET to the value of the app variable webhook_secret}"

# The nonce makes two runs in one second sign different bodies: each signature is accepted once.
body="{\"nonce\": \"$(openssl rand -hex 8)\"}"
timestamp=$(date +%s)
signature=$(printf '%s.%s' "$timestamp" "$body" | openssl dgst -sha256 -hmac "$WEBHOOK_SECRET" -r | cut -d' ' -f1)

response=$(mktemp)
trap 'rm -f "$response"' EXIT
if ! status=$(curl -sS -o "$response" -w '%{http_code}' -X POST "${MESHCERT_URL%/}/hooks/scan" \
    -H 'Content-Type: application/json' \
    -H "X-Meshcert-Timestamp: $timestamp" \
    -H "X-Meshcert-Signature: sha256=$signature" \
    --data "$body"); then
    echo "meshcert scan hook: no response from ${MESHCERT_URL%/}/hooks/scan: check MESHCERT_URL and that the app runs" >&2
    exit 1
fi

if [ "$status" != 200 ]; then
    echo "meshcert scan hook: HTTP $status from ${MESHCERT_URL%/}/hooks/scan:" >&2
    cat "$response" >&2
    echo >&2
    exit 1
fi
cat "$response"
echo
