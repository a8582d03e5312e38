#!/usr/bin/env bash
# bench/dashboard.sh - the dashboard's pages with many servers: the server time to
# render each page (its Server-Timing header) and its size, from
# internal/dashboard's TestThousandServers (20 services of 50 servers, then one of
# 1,000 more; simulated servers, see internal/driver/simdriver), run RUNS times.
#
#     bench/dashboard.sh            # RUNS=5
#
# The table goes to stdout and to bench/results/dashboard-<date>-<time>.md.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
RUNS=${RUNS:-5}
RESULTS_FILE=${RESULTS_FILE:-$BENCH_DIR/results/dashboard-$(date +%Y-%m-%d-%H%M).md}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for ((i = 1; i <= RUNS; i++)); do
	echo "[bench] run $i of $RUNS" >&2
	(cd "$REPO_DIR" && go test -count=1 -run '^TestThousandServers$' -v ./internal/dashboard/) | grep 'PAGE ' | sed 's/.*PAGE //' >>"$out"
done
{
	echo "# Dashboard pages with many servers ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "Server time to render (Server-Timing; median of $RUNS runs, each the median of 7 requests) and the page's size (HTML; CSS and script are 10 KB more, cached). Goal for the fleet page with 1,000 servers: < 200 ms and < 300 KB. $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "| page | path | render, median (min–max) | size |"
	echo "| --- | --- | ---: | ---: |"
	awk -F'|' '{ split($3, r, "="); split($4, b, "="); key = $1 "|" $2; if (!(key in n)) order[++k] = key; v[key, ++n[key]] = r[2]; size[key] = b[2] }
		END {
			for (i = 1; i <= k; i++) {
				key = order[i]; m = n[key]
				for (a = 1; a <= m; a++) for (b2 = a + 1; b2 <= m; b2++) if (v[key, b2] < v[key, a]) { t = v[key, a]; v[key, a] = v[key, b2]; v[key, b2] = t }
				split(key, p, "|")
				printf "| %s | `%s` | %.1f ms (%.1f–%.1f) | %.1f KB |\n", p[1], p[2], v[key, int((m + 1) / 2)], v[key, 1], v[key, m], size[key] / 1024
			}
		}' "$out"
} | tee "$RESULTS_FILE"
echo "[bench] results written to $RESULTS_FILE" >&2
