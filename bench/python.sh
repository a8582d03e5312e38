#!/usr/bin/env bash
# bench/python.sh - rolling update of the Python example (examples/python), a program
# that ignores SIGTERM as PID 1, with init = true and with init = false, and of the Go
# example (examples/hello), which handles SIGTERM, under a fixed-rate load.
#
# See bench/README.md for what is measured and how. Quick start:
#
#     bench/python.sh                  # full run (RUNS=5), about 6 minutes on 2 cores
#     RUNS=3 bench/python.sh           # fewer repetitions
#     bench/python.sh -s "init noinit" # only some systems
#     bench/python.sh -h               # all options
#
# The results table goes to stdout and to bench/results/python-<date>.md;
# progress goes to stderr.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

# ---------------------------------------------------------------- settings
RUNS=${RUNS:-5}
SYSTEMS=${SYSTEMS:-"init noinit hello"}
RATE=${RATE:-100}                 # requests per second during the rollouts
STOP_TIMEOUT=${STOP_TIMEOUT:-10s} # the services' stop_timeout (kiln's default is 10s)
LEAD_SECONDS=${LEAD_SECONDS:-1}   # load before the update is issued
TAIL_SECONDS=${TAIL_SECONDS:-2}   # load after the update command returned
PORT_BASE=${PORT_BASE:-18600}     # first port tried for front doors
BENCH_SDE=${BENCH_SDE:-1700000000} # SOURCE_DATE_EPOCH
BASE=${BASE:-}                    # the Python example's base; default: scripts/debian-python-base
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results}
RESULTS_FILE=${RESULTS_FILE:-$RESULTS_DIR/python-$(date +%Y-%m-%d).md}
KILN_BIN=${KILN_BIN:-}
KEEP_WORK=${KEEP_WORK:-0}

usage() {
	cat <<EOF
usage: bench/python.sh [-n RUNS] [-s "init noinit hello"] [-b BASE] [-k] [-h]

  -n RUNS     rolling updates per system (default $RUNS)
  -s SYSTEMS  what to roll out (default "$SYSTEMS")
                init    examples/python, init = true
                noinit  examples/python, init = false (Python is PID 1 and ignores SIGTERM)
                hello   examples/hello (Go, stops on SIGTERM), for comparison
  -b BASE     the Python example's base (-var base=...): a rootfs tarball, an OCI layout,
              or docker://python:3.12-slim once kiln reads the local engine's images;
              default: the tarball scripts/debian-python-base builds (or reuses)
  -k          keep the temporary work directory (for debugging)
  -h          this help

Environment: RUNS, SYSTEMS, BASE, RATE (rps during rollouts, default $RATE),
STOP_TIMEOUT (every service's stop_timeout, default $STOP_TIMEOUT), LEAD_SECONDS
($LEAD_SECONDS), TAIL_SECONDS ($TAIL_SECONDS), PORT_BASE ($PORT_BASE), BENCH_SDE,
KILN_BIN (use this kiln binary), KEEP_WORK=1, RESULTS_FILE.
EOF
}

while getopts ":n:s:b:kh" opt; do
	case $opt in
	n) RUNS=$OPTARG ;;
	s) SYSTEMS=$OPTARG ;;
	b) BASE=$OPTARG ;;
	k) KEEP_WORK=1 ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }
has() { local w; for w in $2; do [[ $w == "$1" ]] && return 0; done; return 1; }

[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || die "RUNS must be a positive integer (got '$RUNS')"
((RUNS >= 3)) || log "warning: RUNS=$RUNS < 3; medians will be noisy"
for s in $SYSTEMS; do has "$s" "init noinit hello" || die "unknown system '$s' (init, noinit, hello)"; done
[[ $RATE =~ ^[0-9]+$ ]] || die "RATE must be an integer"
[[ $STOP_TIMEOUT =~ ^[0-9]+s$ ]] || die "STOP_TIMEOUT must be whole seconds, like 10s (got '$STOP_TIMEOUT')"

# ---------------------------------------------------------------- preflight
command -v go >/dev/null || die "go is not on PATH"
command -v docker >/dev/null || die "the docker CLI is not installed"
if ! docker_err=$(docker info 2>&1 >/dev/null); then
	die "the Docker daemon is not reachable ('docker info' failed):
$docker_err
Start it (e.g. 'service docker start', or scripts/ensure-docker) and run again."
fi

# ---------------------------------------------------------------- work dir and cleanup
ID=p$$ # in the name of everything this run creates
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-python.XXXXXX")
mkdir -p "$WORK/bin" "$WORK/cells" "$WORK/runs"
declare -a KILN_SVCS=()
LG_PID=      # the running load generator, if any
KILN_ACTIVE= # DIR|SERVICE|PID of the running kiln up, if any

cleanup() {
	local rc=$? dir svc pid
	trap - INT TERM
	set +e
	if [[ -n $LG_PID ]]; then kill -INT "$LG_PID" 2>/dev/null; wait "$LG_PID" 2>/dev/null; fi
	if [[ -n $KILN_ACTIVE ]]; then
		IFS='|' read -r dir svc pid <<<"$KILN_ACTIVE"
		if kill -0 "$pid" 2>/dev/null; then
			timeout 60 "$KILN" -C "$dir" destroy "$svc" >/dev/null 2>&1
			kill -INT "$pid" 2>/dev/null
			for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
			kill -KILL "$pid" 2>/dev/null
		fi
	fi
	# A daemon that died leaves its servers running: remove them by label.
	for svc in "${KILN_SVCS[@]}"; do
		docker ps -aq --filter "label=dev.kiln.service=$svc" | xargs -r docker rm -f >/dev/null 2>&1
	done
	if [[ $KEEP_WORK == 1 || $rc -ne 0 ]]; then
		log "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	return $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- binaries and base
KILN=$WORK/bin/kiln
if [[ -n $KILN_BIN ]]; then
	[[ -x $KILN_BIN ]] || die "KILN_BIN=$KILN_BIN is not executable"
	cp "$KILN_BIN" "$KILN"
	KILN_FROM=$KILN_BIN
else
	log "building kiln from $REPO_DIR/cmd/kiln"
	(cd "$REPO_DIR" && go build -o "$KILN" ./cmd/kiln) >&2 || die "go build ./cmd/kiln failed in the work tree"
	KILN_FROM="./cmd/kiln at $(cd "$REPO_DIR" && git rev-parse --short HEAD 2>/dev/null || echo 'a tree with no commit')"
	if [[ -n $(cd "$REPO_DIR" && git status --porcelain -- cmd internal go.mod go.sum 2>/dev/null) ]]; then
		KILN_FROM+=" (with uncommitted changes)"
	fi
fi
log "building the load generator (bench/loadgen)"
(cd "$BENCH_DIR/loadgen" && go build -o "$WORK/bin/loadgen" .) >&2 || die "go build of bench/loadgen failed"
LOADGEN=$WORK/bin/loadgen
export SOURCE_DATE_EPOCH=$BENCH_SDE

if has init "$SYSTEMS" || has noinit "$SYSTEMS"; then
	if [[ -z $BASE ]]; then
		log "the Python base: scripts/debian-python-base (a minute the first time, then cached)"
		BASE=$("$REPO_DIR/scripts/debian-python-base") || die "scripts/debian-python-base failed"
	fi
	case $BASE in docker://* | /*) ;; *) BASE=$(cd "$(dirname "$BASE")" && pwd)/$(basename "$BASE") ;; esac
fi

# ---------------------------------------------------------------- the apps
# make_app SYSTEM DIR SERVICE: a copy of the system's example whose service is SERVICE,
# with the system's init and STOP_TIMEOUT.
make_app() {
	local sys=$1 dir=$2 svc=$3 src name want
	case $sys in init | noinit) src=$REPO_DIR/examples/python name=python ;; hello) src=$REPO_DIR/examples/hello name=hello ;; esac
	mkdir -p "$dir"
	cp -a "$src/." "$dir"
	rm -rf "$dir/.kiln"
	local f=$dir/kiln.hcl
	sed -i -e "s/^service \"$name\" {/service \"$svc\" {\n  stop_timeout = \"$STOP_TIMEOUT\"/" "$f"
	case $sys in
	init) sed -i -e 's/^\( *init *=\).*/\1 true/' "$f" ;;
	noinit) sed -i -e 's/^\( *init *=\).*/\1 false/' "$f" ;;
	esac
	for want in "^service \"$svc\" {" "^ *stop_timeout = \"$STOP_TIMEOUT\"" '^ *listen *= var\.listen$' '^variable "version"' \
		"$(case $sys in init) echo '^ *init *= true$' ;; noinit) echo '^ *init *= false$' ;; *) echo '^service' ;; esac)"; do
		grep -q -- "$want" "$f" || die "could not set up $f: no line matches /$want/; has $src/kiln.hcl changed shape?"
	done
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
NEXT_PORT=$PORT_BASE
free_port() {
	local i
	for ((i = 0; i < 200; i++)); do
		NEXT_PORT=$((NEXT_PORT + 1))
		port_busy "$NEXT_PORT" || { PORT=$NEXT_PORT; return 0; }
	done
	die "no free port above $PORT_BASE (set PORT_BASE)"
}

kiln_start() { # SYSTEM
	local sys=$1 v out i pid
	KILN_SVC=bench-$ID-$sys
	KILN_DIR=$WORK/cells/$sys
	make_app "$sys" "$KILN_DIR" "$KILN_SVC"
	free_port
	KILN_PORT=$PORT
	export KILN_VAR_listen=127.0.0.1:$KILN_PORT
	if [[ $sys == hello ]]; then unset KILN_VAR_base; else export KILN_VAR_base=$BASE; fi
	# Bake both versions first (not timed), so that apply only finds them baked.
	for v in 2 1; do
		out=$(cd "$KILN_DIR" && KILN_VAR_version=$v "$KILN" bake 2>>"$KILN_DIR/bake.err") ||
			die "kiln bake failed in $KILN_DIR: $(tail -n 20 "$KILN_DIR/bake.err")"
	done
	log "$sys: kiln up (2 replicas, front door 127.0.0.1:$KILN_PORT)"
	(cd "$KILN_DIR" && exec env KILN_VAR_version=1 "$KILN" up >"$KILN_DIR/up.out" 2>"$KILN_DIR/up.err") &
	pid=$!
	KILN_SVCS+=("$KILN_SVC")
	KILN_ACTIVE="$KILN_DIR|$KILN_SVC|$pid"
	KILN_PID=$pid
	for ((i = 0; i < 1200; i++)); do
		grep -q "revision 1 deployed" "$KILN_DIR/up.out" "$KILN_DIR/up.err" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || die "kiln up exited before deploying revision 1:
$(tail -n 30 "$KILN_DIR/up.err")"
		sleep 0.1
	done
	die "kiln up did not deploy revision 1 within 120s:
$(tail -n 30 "$KILN_DIR/up.err")"
}
kiln_stop() {
	local i
	(cd "$KILN_DIR" && timeout 120 "$KILN" destroy "$KILN_SVC") >"$KILN_DIR/destroy.out" 2>&1 ||
		log "warning: kiln destroy $KILN_SVC failed: $(cat "$KILN_DIR/destroy.out")"
	kill -INT "$KILN_PID" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do kill -0 "$KILN_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$KILN_PID" 2>/dev/null; then
		log "warning: kiln up did not stop within 10s of SIGINT; killing it"
		kill -KILL "$KILN_PID" 2>/dev/null || true
	fi
	wait "$KILN_PID" 2>/dev/null || true
	KILN_ACTIVE=
}

kv() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }
# seconds DURATION: a Go duration as kiln prints it (310ms, 3.18s, 1m2.5s) in seconds.
seconds() {
	awk -v d="$1" 'BEGIN {
		s = 0
		while (match(d, /^[0-9.]+(ms|µs|us|ns|h|m|s)/)) {
			t = substr(d, 1, RLENGTH); d = substr(d, RLENGTH + 1)
			match(t, /[a-zµ]+$/); u = substr(t, RSTART); n = substr(t, 1, RSTART - 1) + 0
			s += (u == "h") ? n * 3600 : (u == "m") ? n * 60 : (u == "s") ? n : (u == "ms") ? n / 1e3 : (u == "ns") ? n / 1e9 : n / 1e6
		}
		printf "%.3f", s
	}'
}

# rollout SYSTEM RUN: one timed `kiln apply` to the other version under load; appends
# "system run from to seconds ok failed sent stop1 stop2" to runs.tsv.
rollout() {
	local sys=$1 run=$2 from to rev out t0 t1 code=0 stops
	from=$(((run % 2) ? 1 : 2)) to=$(((run % 2) ? 2 : 1)) rev=$((run + 1))
	out=$WORK/runs/$sys-$run
	"$LOADGEN" -url "http://127.0.0.1:$KILN_PORT/" -rate "$RATE" -duration 10m -warmup 20 \
		-ready-file "$out.ready" >"$out.kv" 2>"$out.lg.err" &
	LG_PID=$!
	for _ in $(seq 1 100); do [[ -e $out.ready ]] && break; sleep 0.1; done
	sleep "$LEAD_SECONDS"
	t0=$(date +%s.%N)
	(cd "$KILN_DIR" && KILN_VAR_version=$to timeout 300 "$KILN" apply -auto-approve) >"$out.apply" 2>&1 || code=$?
	t1=$(date +%s.%N)
	sleep "$TAIL_SECONDS"
	kill -INT "$LG_PID"
	wait "$LG_PID" || die "the load generator failed: $(cat "$out.lg.err")"
	LG_PID=
	((code == 0)) && grep -q "revision $rev deployed" "$out.apply" ||
		die "$sys run $run: kiln apply (version $from → $to) did not deploy revision $rev (exit $code): $(tail -n 20 "$out.apply")"
	stops=$( (cd "$KILN_DIR" && "$KILN" events --service "$KILN_SVC") |
		sed -n "s/.*destroyed (stopped in \([^)]*\)): replaced by revision $rev\$/\1/p")
	[[ $(wc -w <<<"$stops") == 2 ]] || die "$sys run $run: want 2 servers destroyed for revision $rev, the events name: $stops"
	printf '%s\t%s\t%s\t%s\t%.3f\t%s\t%s\t%s' "$sys" "$run" "$from" "$to" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
		"$(kv "$out.kv" ok)" "$(kv "$out.kv" failed)" "$(kv "$out.kv" sent)" >>"$WORK/runs.tsv"
	for s in $stops; do printf '\t%s' "$(seconds "$s")" >>"$WORK/runs.tsv"; done
	printf '\n' >>"$WORK/runs.tsv"
	log "  $sys run $run: version $from → $to in $(tail -n1 "$WORK/runs.tsv" | cut -f5) s, servers stopped in $(paste -sd' ' <<<"$stops"), failed $(kv "$out.kv" failed) of $(kv "$out.kv" sent)"
}

# ---------------------------------------------------------------- the runs
printf '' >"$WORK/runs.tsv"
NOISE_BEFORE="$(docker ps -q | wc -l) containers running, load average $(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s)
for sys in $SYSTEMS; do
	kiln_start "$sys"
	for ((run = 1; run <= RUNS; run++)); do rollout "$sys" "$run"; done
	kiln_stop
done
ELAPSED=$(($(date +%s) - START))
NOISE_AFTER="$(docker ps -q | wc -l) containers running, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
# stats SYSTEM COLUMN...: "median min max count" over the system's runs of the values
# in those columns of runs.tsv.
stats() {
	local sys=$1
	shift
	awk -F'\t' -v sys="$sys" -v cols="$*" '
		BEGIN { n = split(cols, c, " ") }
		$1 == sys { for (i = 1; i <= n; i++) if ($c[i] != "") v[++k] = $c[i] + 0 }
		END {
			if (k == 0) { print "- - - 0"; exit }
			for (i = 2; i <= k; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
			m = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
			print m, v[1], v[k], k
		}' "$WORK/runs.tsv"
}
sum_col() { awk -F'\t' -v sys="$1" -v col="$2" '$1 == sys { s += $col } END { print s + 0 }' "$WORK/runs.tsv"; }
fmt_s() { awk -v m="$1" -v lo="$2" -v hi="$3" 'BEGIN { if (m == "-") { print "–"; exit } printf "%.2f s (%.2f–%.2f)", m, lo, hi }'; }
title() {
	case $1 in
	init) echo "examples/python, init = true" ;;
	noinit) echo "examples/python, init = false" ;;
	hello) echo "examples/hello (Go, handles SIGTERM)" ;;
	esac
}
ratio() { # SYSTEM: its median rollout time over init's
	local m o
	has init "$SYSTEMS" || { echo "–"; return; }
	read -r m _ _ _ < <(stats "$1" 5)
	read -r o _ _ _ < <(stats init 5)
	awk -v a="$m" -v b="$o" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "–"; else printf "%.2f×", a / b }'
}

report() {
	local sys
	echo "# Rolling update of a Python app: init = true vs false ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "Rolling update of 2 servers from one version to the other (max_surge 1, min_healthy 1s, health every 500ms, stop_timeout $STOP_TIMEOUT) under a continuous load of $RATE requests/s; median (min–max) of $RUNS run(s) per row."
	echo
	echo "| system | rollout time (kiln apply) | × init = true | a replaced server stopped in | failed requests / sent | runs |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: |"
	for sys in $SYSTEMS; do
		read -r c1 c2 c3 k < <(stats "$sys" 5)
		read -r s1 s2 s3 _ < <(stats "$sys" 9 10)
		printf '| %s | %s | %s | %s | %s / %s | %s |\n' "$(title "$sys")" "$(fmt_s "$c1" "$c2" "$c3")" "$(ratio "$sys")" \
			"$(fmt_s "$s1" "$s2" "$s3")" "$(sum_col "$sys" 7)" "$(sum_col "$sys" 8)" "$k"
	done
	echo
	echo "- *rollout time*: from issuing \`KILN_VAR_version=V kiln apply -auto-approve\` (both versions baked beforehand) to its return, once both servers run the new version."
	echo "- *stopped in*: from the destroyed events (\`server NAME destroyed (stopped in X)\`): how long each replaced server took from SIGTERM to removal, over both servers of every run. kiln replaces one server after the other, so a server that waits for stop_timeout adds it to the rollout once per server."
	echo "- *failed requests*: transport errors + responses outside 2xx, from ${LEAD_SECONDS}s before the update to ${TAIL_SECONDS}s after kiln apply returned."
	echo
	echo "## Every run"
	echo
	echo "| system | run | version | rollout time | servers stopped in | failed / sent |"
	echo "| --- | ---: | --- | ---: | ---: | ---: |"
	awk -F'\t' '{ printf "| %s | %s | %s → %s | %.2f s | %.2f s, %.2f s | %s / %s |\n", $1, $2, $3, $4, $5, $9, $10, $7, $8 }' "$WORK/runs.tsv"
	echo
	echo "## Setup"
	echo
	echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); $(go version | awk '{print $3}')"
	echo "- Docker: engine $(docker version -f '{{.Server.Version}}' 2>/dev/null), storage driver $(docker info -f '{{.Driver}}' 2>/dev/null)"
	echo "- other load on the machine: before the run $NOISE_BEFORE; after it $NOISE_AFTER. Other containers (tests) running meanwhile make the numbers noisier."
	echo "- kiln: built from $KILN_FROM; each example's kiln.hcl as in the repository, with \`stop_timeout = \"$STOP_TIMEOUT\"\` and, for examples/python, \`init\` set; \`kiln up\` deploys version 1, each run is \`KILN_VAR_version=V kiln apply -auto-approve\`, alternating 1 → 2 → 1."
	if has init "$SYSTEMS" || has noinit "$SYSTEMS"; then
		echo "- the Python example's base: \`$(basename "$BASE")\` ($(case $BASE in docker://*) echo "an image of the local Docker engine" ;; *.tar | *.tar.gz) echo "a Debian bookworm rootfs tarball from scripts/debian-python-base" ;; *) echo "an OCI layout" ;; esac))"
	fi
	echo "- load: bench/loadgen, open-loop at a fixed rate, Go net/http client with keep-alive, 10s timeout; only loopback addresses are targeted."
	echo "- wall time of the measurements: ${ELAPSED} s"
}

mkdir -p "$(dirname "$RESULTS_FILE")"
report | tee "$RESULTS_FILE"
log "results written to $RESULTS_FILE"
