#!/usr/bin/env bash
# Writes an IP-ranges file for `ivt.ip_ranges_file`: the shipped reserved
# blocks (configs/ivt/ip-ranges.txt without its 2023 data-centre
# snapshot) plus the ranges cloud providers publish today,
# tagged `datacenter`. Azure's list (service tags) lives under a URL that
# changes every week: append its prefixes by hand if you need them. Needs network access to the providers; run it on a
# schedule (adshard reloads the file when it changes) and write through a
# temporary file so a half-written file is never read:
#
#   deploy/ivt/datacenter-ranges.sh > /etc/adshard/ip-ranges.txt.new &&
#     mv /etc/adshard/ip-ranges.txt.new /etc/adshard/ip-ranges.txt
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
sed '/^# BEGIN data-centre snapshot/,$d' "$here/configs/ivt/ip-ranges.txt"
fetch() { curl -fsSL --max-time 60 "$1"; }
echo "# AWS (https://ip-ranges.amazonaws.com/ip-ranges.json)"
fetch https://ip-ranges.amazonaws.com/ip-ranges.json | python3 -c '
import json, sys
d = json.load(sys.stdin)
for p in sorted({x["ip_prefix"] for x in d["prefixes"]} | {x["ipv6_prefix"] for x in d["ipv6_prefixes"]}):
    print(p, "datacenter")'
google() { # url: Google's prefixes format (cloud.json, googlebot.json, ...)
  fetch "$1" | python3 -c '
import json, sys
for x in json.load(sys.stdin)["prefixes"]:
    print(x.get("ipv4Prefix") or x.get("ipv6Prefix"), "datacenter")'
}
echo "# Google Cloud (https://www.gstatic.com/ipranges/cloud.json)"
google https://www.gstatic.com/ipranges/cloud.json
echo "# Google's crawlers and fetchers (developers.google.com/search/apis/ipranges)"
for list in googlebot special-crawlers user-triggered-fetchers; do
  google "https://developers.google.com/search/apis/ipranges/$list.json"
done
echo "# Oracle Cloud (https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json)"
fetch https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json | python3 -c '
import json, sys
for r in json.load(sys.stdin)["regions"]:
    for c in r["cidrs"]:
        print(c["cidr"], "datacenter")'
echo "# DigitalOcean (https://digitalocean.com/geo/google.csv)"
fetch https://digitalocean.com/geo/google.csv | cut -d, -f1 | sed 's/$/ datacenter/'
