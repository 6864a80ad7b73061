#!/usr/bin/env bash
# The adaptive-concurrency benchmark of BENCHMARKS.md: one 20 s run of a gateway with one HEC
# sink to a thoth-load receiver on 127.0.0.1:8090 (start it first, with or without --two-sends).
# usage: benches/adaptive_jitter.sh GATEWAY_BIN CONCURRENCY_LINE LABEL   (from the repository root)
set -euo pipefail
GW=$1; CONC=$2; LABEL=$3
D=$(mktemp -d)
cat > $D/gw.toml <<TOML
data_dir = "$D/data"
[api]
listen = "127.0.0.1:8687"
[[api.tokens]]
tenant_id = "acme"
token = "acme-demo-token"
[wal]
max_bytes = "4GiB"
fsync = "always"
[[tenants]]
id = "acme"
name = "Acme Corp"
[[mdm.providers]]
name = "acme-jamf"
tenant_id = "acme"
kind = "jamf"
file = "$PWD/examples/mdm/acme-jamf.json"
endpoint_id_attribute = "Thoth Endpoint ID"
[sinks.splunk]
type = "splunk_hec"
endpoint = "http://127.0.0.1:8090"
token = "bench-hec-token"
$CONC
TOML
curl -s 127.0.0.1:8090/stats > $D/before.json
$GW run --config $D/gw.toml 2> $D/gw.log &
GWPID=$!
sleep 1
target/release/thoth-load send --target http://127.0.0.1:8687/v1/events --tenant acme=acme-demo-token --duration 20s --connections 4 --json --quiet > $D/send.json 2>/dev/null || true
curl -s 127.0.0.1:8090/stats > $D/after_load.json
LIMIT=$(curl -s 127.0.0.1:8687/metrics | grep '^thoth_sink_concurrency_limit' | awk '{print $2}')
python3 - $D $LABEL "$LIMIT" <<'PY'
import json,sys
d,label,limit=sys.argv[1],sys.argv[2],sys.argv[3]
b=json.load(open(d+'/before.json')); a=json.load(open(d+'/after_load.json')); s=json.load(open(d+'/send.json'))
dur=s.get('seconds') or s.get('duration_s') or 20
acc=s['accepted']; dl=a['hec_events']-b['hec_events']
print(f"{label}: accepted {acc} ({acc/dur:,.0f}/s), delivered during the load {dl} ({dl/dur:,.0f}/s, {100*dl/max(acc,1):.0f} % of accepted), limit at the end {limit}")
PY
kill $GWPID; wait $GWPID 2>/dev/null || true
rm -rf $D
