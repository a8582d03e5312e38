#!/usr/bin/env bash
# bench/rollout.sh - rolling update of the example service (examples/hello) with
# kiln and with Docker Swarm, on this machine and in the same run, while a
# fixed-rate load generator hits the service; and the latency kiln's front door
# adds to a request.
#
# See bench/README.md for what is measured and how. Quick start:
#
#     bench/rollout.sh                 # full run (RUNS=3), ~10 min on 2 cores
#     RUNS=5 bench/rollout.sh          # more repetitions
#     bench/rollout.sh -s "kiln swarm" -r 4   # only some systems / sizes
#     bench/rollout.sh -h              # all options
#
# The results table goes to stdout and to bench/results/rollout-<date>.md;
# progress goes to stderr.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

# ---------------------------------------------------------------- settings
RUNS=${RUNS:-3}
REPLICAS=${REPLICAS:-"4 10"}
SYSTEMS=${SYSTEMS:-"kiln swarm kiln-mh0 swarm-hc"}
RATE=${RATE:-1000}              # requests per second during the rollouts
LATENCY=${LATENCY:-1}           # 0: skip the front-door latency measurement
LAT_RATE=${LAT_RATE:-1000}      # requests per second of the latency measurement
LAT_SECONDS=${LAT_SECONDS:-10}  # length of one latency measurement
LAT_ROUNDS=${LAT_ROUNDS:-3}     # front door / direct pairs, interleaved
LAT_REPLICAS=${LAT_REPLICAS:-4} # measured on the kiln service of this size
LEAD_SECONDS=${LEAD_SECONDS:-1} # load before the update is issued
TAIL_SECONDS=${TAIL_SECONDS:-4} # load after the update command returned
PORT_BASE=${PORT_BASE:-18400}   # first port tried for front doors and load balancers
BENCH_SDE=${BENCH_SDE:-1700000000} # SOURCE_DATE_EPOCH
EXAMPLE_DIR=${EXAMPLE_DIR:-$REPO_DIR/examples/hello}
TOOLS_DIR=${TOOLS_DIR:-$BENCH_DIR/.tools}
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results}
RESULTS_FILE=${RESULTS_FILE:-$RESULTS_DIR/rollout-$(date +%Y-%m-%d).md}
KILN_BIN=${KILN_BIN:-}
KILN_REF=${KILN_REF:-}          # build kiln from this commit instead of the work tree
KEEP_WORK=${KEEP_WORK:-0}
HAPROXY_PKGS=(haproxy liblua5.3-0 libopentracing-c-wrapper0 libopentracing1)

usage() {
	cat <<EOF
usage: bench/rollout.sh [-n RUNS] [-r "4 10"] [-s "kiln swarm kiln-mh0 swarm-hc"] [-L] [-k] [-h]

  -n RUNS      rolling updates per system and size (default $RUNS)
  -r REPLICAS  service sizes (default "$REPLICAS")
  -s SYSTEMS   what to roll out (default "$SYSTEMS")
                 kiln      kiln, health check every 1s, min_healthy 1s, max_surge 1
                 swarm     Docker Swarm, start-first, parallelism 1, monitor 1s, no health check
                 kiln-mh0  as kiln, with min_healthy 0s (health gate only)
                 swarm-hc  as swarm, with a Docker HEALTHCHECK every 1s (Swarm waits for it)
  -L           skip the front-door latency measurement
  -k           keep the temporary work directory (for debugging)
  -h           this help

Environment: RUNS, REPLICAS, SYSTEMS, RATE (rps during rollouts, default $RATE),
LATENCY=0, LAT_RATE ($LAT_RATE), LAT_SECONDS ($LAT_SECONDS), LAT_ROUNDS ($LAT_ROUNDS),
LAT_REPLICAS ($LAT_REPLICAS), LEAD_SECONDS ($LEAD_SECONDS), TAIL_SECONDS ($TAIL_SECONDS),
PORT_BASE ($PORT_BASE), BENCH_SDE, EXAMPLE_DIR, KILN_BIN (use this kiln binary),
KILN_REF (build kiln from that commit, e.g. HEAD, via git archive), KEEP_WORK=1,
RESULTS_FILE, TOOLS_DIR (cache of the HAProxy files, default bench/.tools).
EOF
}

while getopts ":n:r:s:Lkh" opt; do
	case $opt in
	n) RUNS=$OPTARG ;;
	r) REPLICAS=$OPTARG ;;
	s) SYSTEMS=$OPTARG ;;
	L) LATENCY=0 ;;
	k) KEEP_WORK=1 ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }
has() { local w; for w in $2; do [[ $w == "$1" ]] && return 0; done; return 1; }
q() { printf '%q' "$1"; }

[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || die "RUNS must be a positive integer (got '$RUNS')"
((RUNS >= 3)) || log "warning: RUNS=$RUNS < 3; medians will be noisy"
for n in $REPLICAS; do [[ $n =~ ^[0-9]+$ && $n -ge 2 ]] || die "replica counts must be integers >= 2 (got '$n')"; done
for s in $SYSTEMS; do has "$s" "kiln swarm kiln-mh0 swarm-hc" || die "unknown system '$s' (kiln, swarm, kiln-mh0, swarm-hc)"; done
[[ $RATE =~ ^[0-9]+$ && $LAT_RATE =~ ^[0-9]+$ ]] || die "RATE and LAT_RATE must be integers"
WANT_KILN=0 WANT_SWARM=0 WANT_HC=0
for s in $SYSTEMS; do
	case $s in kiln*) WANT_KILN=1 ;; swarm*) WANT_SWARM=1 ;; esac
	[[ $s == swarm-hc ]] && WANT_HC=1
done
if [[ $LATENCY == 1 ]] && ! has kiln "$SYSTEMS"; then WANT_KILN=1; fi

# ---------------------------------------------------------------- preflight
command -v go >/dev/null || die "go is not on PATH"
command -v docker >/dev/null || die "the docker CLI is not installed"
if ! docker_err=$(docker info 2>&1 >/dev/null); then
	die "the Docker daemon is not reachable ('docker info' failed):
$docker_err
Start it (e.g. 'service docker start', or scripts/ensure-docker) and run again."
fi

# Swarm: use the node if it is already a manager; initialize a single-node swarm
# otherwise, and leave it at the end.
SWARM_INIT=0
if ((WANT_SWARM)); then
	state=$(docker info --format '{{.Swarm.LocalNodeState}}')
	case $state in
	active)
		[[ $(docker info --format '{{.Swarm.ControlAvailable}}') == true ]] ||
			die "this Docker engine is in a swarm but not a manager; run on a manager or leave Swarm out (-s 'kiln kiln-mh0')"
		log "Docker is already a swarm manager: using it (the swarm is left as it is at the end)"
		;;
	inactive)
		log "initializing a single-node swarm (docker swarm init --advertise-addr 127.0.0.1); it is left at the end"
		docker swarm init --advertise-addr 127.0.0.1 >/dev/null || die "docker swarm init failed"
		SWARM_INIT=1
		;;
	*) die "the swarm state of this Docker engine is '$state'; fix it (docker swarm leave --force?) or leave Swarm out (-s 'kiln kiln-mh0')" ;;
	esac
	for c in apt-get dpkg ldd tar; do command -v $c >/dev/null || die "$c is needed to build the HAProxy image for Swarm (Debian); leave Swarm out with -s 'kiln kiln-mh0'"; done
fi

# ---------------------------------------------------------------- work dir and cleanup
ID=r$$ # in the name of everything this run creates
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-rollout.XXXXXX")
mkdir -p "$WORK/bin" "$WORK/cells" "$WORK/runs"
declare -a KILN_SVCS=() SWARM_SVCS=() LB_CTRS=() MY_IMAGES=() MY_DIGESTS=()
LG_PID=         # the running load generator, if any
EV_PID=         # the running docker events, if any
KILN_ACTIVE=    # DIR|SERVICE|PID of the running kiln up, if any
NET=
PRE_KILN_IMGS=$(docker image ls --format '{{.Repository}}:{{.Tag}}' 'kiln/img' 2>/dev/null | sort -u || true)

cleanup() {
	local rc=$? pid dir svc
	trap - INT TERM
	set +e
	if [[ -n $LG_PID ]]; then kill -INT "$LG_PID" 2>/dev/null; wait "$LG_PID" 2>/dev/null; fi
	if [[ -n $EV_PID ]]; then kill "$EV_PID" 2>/dev/null; wait "$EV_PID" 2>/dev/null; fi
	# kiln: destroy the service through the daemon, stop the daemon, then remove
	# anything left by label (a daemon that died leaves its servers running).
	if [[ -n $KILN_ACTIVE ]]; then
		IFS='|' read -r dir svc pid <<<"$KILN_ACTIVE"
		if kill -0 "$pid" 2>/dev/null; then
			timeout 60 "$KILN" -C "$dir" destroy "$svc" >/dev/null 2>&1
			kill -INT "$pid" 2>/dev/null
			for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
			kill -KILL "$pid" 2>/dev/null
		fi
	fi
	for svc in "${KILN_SVCS[@]}"; do
		docker ps -aq --filter "label=dev.kiln.service=$svc" | xargs -r docker rm -f >/dev/null 2>&1
	done
	for c in "${LB_CTRS[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
	for svc in "${SWARM_SVCS[@]}"; do docker service rm "$svc" >/dev/null 2>&1; done
	for svc in "${SWARM_SVCS[@]}"; do wait_gone "com.docker.swarm.service.name=$svc" 60; done
	if [[ -n $NET ]]; then
		for _ in 1 2 3 4 5; do docker network rm "$NET" >/dev/null 2>&1 && break; sleep 2; done
	fi
	for img in "${MY_IMAGES[@]}"; do
		for _ in 1 2 3 4 5; do docker rmi "$img" >/dev/null 2>&1 && break; sleep 2; done
	done
	# kiln loads the images it deploys as kiln/img:<digest>: remove those this run
	# baked, if they were not there before and nothing uses them.
	for d in "${MY_DIGESTS[@]}"; do
		grep -qx "kiln/img:$d" <<<"$PRE_KILN_IMGS" || docker rmi "kiln/img:$d" >/dev/null 2>&1
	done
	# Leave the swarm this run initialized, unless someone else has started to use
	# it meanwhile (another benchmark finding it active): leaving would break them.
	if ((SWARM_INIT)); then
		if [[ -z $(docker service ls -q 2>/dev/null) ]]; then
			docker swarm leave --force >/dev/null 2>&1
		else
			log "not leaving the swarm this run initialized: other services run in it ($(docker service ls --format '{{.Name}}' | paste -sd' ')); 'docker swarm leave --force' once they are done"
		fi
	fi
	if [[ $KEEP_WORK == 1 || $rc -ne 0 ]]; then
		log "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	return $rc
}
# wait_gone LABEL SECONDS: until no container with LABEL exists (Swarm removes
# the containers of a removed service in the background).
wait_gone() {
	local i
	for ((i = 0; i < $2 * 5; i++)); do
		[[ -z $(docker ps -aq --filter "label=$1") ]] && return 0
		sleep 0.2
	done
	return 1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- binaries
KILN=$WORK/bin/kiln
if [[ -n $KILN_BIN ]]; then
	[[ -x $KILN_BIN ]] || die "KILN_BIN=$KILN_BIN is not executable"
	cp "$KILN_BIN" "$KILN"
	KILN_FROM=$KILN_BIN
elif [[ -n $KILN_REF ]]; then
	rev=$(cd "$REPO_DIR" && git rev-parse --short "$KILN_REF^{commit}") || die "KILN_REF=$KILN_REF is not a commit"
	log "building kiln from commit $rev (git archive, the work tree is not used)"
	mkdir -p "$WORK/kiln-src"
	(cd "$REPO_DIR" && git archive "$rev") | tar -x -C "$WORK/kiln-src"
	(cd "$WORK/kiln-src" && go build -o "$KILN" ./cmd/kiln) >&2 || die "go build ./cmd/kiln failed at commit $rev"
	KILN_FROM="./cmd/kiln at commit $rev"
else
	log "building kiln from $REPO_DIR/cmd/kiln"
	(cd "$REPO_DIR" && go build -o "$KILN" ./cmd/kiln) >&2 ||
		die "go build ./cmd/kiln failed in the work tree; KILN_REF=HEAD builds the last commit instead"
	KILN_FROM="./cmd/kiln at $(cd "$REPO_DIR" && git rev-parse --short HEAD 2>/dev/null || echo 'a tree with no commit')"
	if [[ -n $(cd "$REPO_DIR" && git status --porcelain -- cmd internal go.mod go.sum 2>/dev/null) ]]; then
		KILN_FROM+=" (with uncommitted changes)"
	fi
fi
log "building the load generator (bench/loadgen)"
(cd "$BENCH_DIR/loadgen" && go build -o "$WORK/bin/loadgen" . &&
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$WORK/bin/healthcheck" ./healthcheck) >&2 ||
	die "go build of bench/loadgen failed"
LOADGEN=$WORK/bin/loadgen

export SOURCE_DATE_EPOCH=$BENCH_SDE

# ---------------------------------------------------------------- the example
[[ -f $EXAMPLE_DIR/kiln.hcl ]] || die "$EXAMPLE_DIR/kiln.hcl not found"
TEMPLATE=$WORK/app
cp -a "$EXAMPLE_DIR/." "$TEMPLATE"
rm -rf "$TEMPLATE/.kiln"

# make_app DIR SERVICE REPLICAS MIN_HEALTHY: a copy of the example whose service
# is SERVICE with REPLICAS servers, a health check every 1s, max_surge 1 and
# MIN_HEALTHY. The image is renamed bench-hello, so that `kiln bake --load` does
# not overwrite the kiln/hello:latest that the end-to-end tests use.
make_app() {
	local dir=$1 svc=$2 n=$3 mh=$4 f=$1/kiln.hcl
	mkdir -p "$dir"
	cp -a "$TEMPLATE/." "$dir"
	sed -i \
		-e 's/^image "hello" {/image "bench-hello" {/' \
		-e 's/= image\.hello$/= image.bench-hello/' \
		-e "s/^service \"hello\" {/service \"$svc\" {/" \
		-e "s/^\( *replicas *=\).*/\1 $n/" \
		-e 's/^\( *interval *=\).*/\1 "1s"/' \
		-e "s/^\( *min_healthy *=\).*/\1 \"$mh\"/" \
		-e 's/^\( *max_surge *=\).*/\1 1/' \
		-e 's/^\( *strategy *=\).*/\1 "rolling"/' "$f"
	local want
	for want in '^image "bench-hello" {' '= image\.bench-hello$' "^service \"$svc\" {" "^ *replicas *= $n\$" \
		'^ *interval *= "1s"$' "^ *min_healthy *= \"$mh\"\$" '^ *max_surge *= 1$' '^ *strategy *= "rolling"$' \
		'^ *listen *= var\.listen$' '^variable "version"' '^variable "listen"'; do
		grep -q -- "$want" "$f" || die "could not set up $f: no line matches /$want/; has examples/hello/kiln.hcl changed shape? (it needs image \"hello\", service \"hello\" with replicas, listen = var.listen, a health block with interval and an update block with strategy, max_surge and min_healthy)"
	done
	(cd "$dir" && "$KILN" validate >/dev/null 2>"$dir/validate.err") || die "kiln validate failed for $f: $(cat "$dir/validate.err")"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_port: sets PORT to a port nobody listens on, a new one on every call.
NEXT_PORT=$PORT_BASE
free_port() {
	local i
	for ((i = 0; i < 200; i++)); do
		NEXT_PORT=$((NEXT_PORT + 1))
		port_busy "$NEXT_PORT" || { PORT=$NEXT_PORT; return 0; }
	done
	die "no free port above $PORT_BASE (set PORT_BASE)"
}

# ---------------------------------------------------------------- images for Swarm
# The same image content kiln runs, baked by kiln from the same spec and loaded
# into Docker (kiln bake --load), tagged bench-<id>-hello:v1 and :v2.
IMG=bench-$ID-hello
IMG_HC=bench-$ID-hello-hc
HAP_IMG=bench-$ID-haproxy:latest
HAP_VERSION=
if ((WANT_SWARM)); then
	log "baking the example (version 1 and 2) for Swarm"
	make_app "$WORK/swarm-img" "bench-$ID-img" 2 1s
	for v in 1 2; do
		out=$(cd "$WORK/swarm-img" && KILN_VAR_version=$v "$KILN" bake --load 2>"$WORK/swarm-img/bake-$v.err") ||
			die "kiln bake --load failed: $(tail -n 20 "$WORK/swarm-img/bake-$v.err")"
		grep -q 'loaded into Docker as kiln/bench-hello:latest' "$WORK/swarm-img/bake-$v.err" ||
			die "kiln bake --load did not say it loaded kiln/bench-hello:latest: $(cat "$WORK/swarm-img/bake-$v.err")"
		docker tag kiln/bench-hello:latest "$IMG:v$v"
		MY_IMAGES+=("$IMG:v$v")
		log "  $IMG:v$v = $(grep -o 'sha256:[0-9a-f]*' <<<"$out" | head -n1)"
	done
	docker rmi kiln/bench-hello:latest >/dev/null 2>&1 || true
	if ((WANT_HC)); then
		# A Docker HEALTHCHECK needs a program in the image: the image is FROM
		# scratch with no shell, so a tiny static Go client is added.
		if docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=1; else export DOCKER_BUILDKIT=0; fi
		mkdir -p "$WORK/hc"
		cp "$WORK/bin/healthcheck" "$WORK/hc/healthcheck"
		for v in 1 2; do
			printf 'FROM %s\nCOPY healthcheck /app/healthcheck\nHEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD ["/app/healthcheck", "http://127.0.0.1:8080/healthz"]\n' "$IMG:v$v" >"$WORK/hc/Dockerfile"
			docker build -q -t "$IMG_HC:v$v" "$WORK/hc" >/dev/null 2>"$WORK/hc/build.err" ||
				die "docker build of the health-checked image failed: $(cat "$WORK/hc/build.err")"
			MY_IMAGES+=("$IMG_HC:v$v")
		done
	fi

	# HAProxy from Debian's packages, as a container image (docker import of the
	# binary and the shared libraries it needs); cached in TOOLS_DIR.
	hap_tar=$TOOLS_DIR/haproxy-rootfs.tar
	if [[ ! -s $hap_tar ]]; then
		log "fetching HAProxy from Debian (apt-get download ${HAPROXY_PKGS[*]}) into $TOOLS_DIR"
		d=$WORK/haproxy
		mkdir -p "$d/debs" "$d/x" "$d/root/usr/sbin" "$d/root/lib/x86_64-linux-gnu" "$d/root/lib64" "$d/root/tmp" "$d/root/etc"
		if ! (cd "$d/debs" && apt-get download "${HAPROXY_PKGS[@]}") >"$d/apt.log" 2>&1; then
			if [[ $(id -u) == 0 ]]; then
				apt-get update -qq >>"$d/apt.log" 2>&1 || true
				(cd "$d/debs" && apt-get download "${HAPROXY_PKGS[@]}") >>"$d/apt.log" 2>&1 ||
					die "apt-get download ${HAPROXY_PKGS[*]} failed: $(tail -n 5 "$d/apt.log")"
			else
				die "apt-get download ${HAPROXY_PKGS[*]} failed (run 'apt-get update' as root?): $(tail -n 5 "$d/apt.log")"
			fi
		fi
		for deb in "$d"/debs/*.deb; do dpkg -x "$deb" "$d/x"; done
		cp "$d/x/usr/sbin/haproxy" "$d/root/usr/sbin/haproxy"
		libpath=$(find "$d/x" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)
		ldd_out=$(LD_LIBRARY_PATH=$libpath ldd "$d/x/usr/sbin/haproxy")
		if grep -q 'not found' <<<"$ldd_out"; then
			die "HAProxy needs libraries that are neither on this machine nor in ${HAPROXY_PKGS[*]}: $(grep 'not found' <<<"$ldd_out")"
		fi
		while read -r name path; do cp -L "$path" "$d/root/lib/x86_64-linux-gnu/$name"; done < <(awk '/=> \//{print $1, $3}' <<<"$ldd_out")
		cp -L "$(awk '/^\t\/lib64\//{print $1}' <<<"$ldd_out" | head -n1)" "$d/root/lib64/"
		mkdir -p "$TOOLS_DIR"
		tar -C "$d/root" -cf "$hap_tar.tmp" . && mv "$hap_tar.tmp" "$hap_tar"
	fi
	docker import -c 'ENV LD_LIBRARY_PATH=/lib/x86_64-linux-gnu' -c 'ENTRYPOINT ["/usr/sbin/haproxy"]' \
		"$hap_tar" "$HAP_IMG" >/dev/null || die "docker import of HAProxy failed"
	MY_IMAGES+=("$HAP_IMG")
	HAP_VERSION=$(docker run --rm --name "bench-$ID-haproxy-version" "$HAP_IMG" -v 2>/dev/null | head -n1 | awk '{print $3}') ||
		die "the HAProxy image does not run; remove $hap_tar and try again"
	NET=bench-$ID-net
	docker network create -d overlay --attachable "$NET" >/dev/null || die "docker network create -d overlay failed"
fi

# ---------------------------------------------------------------- measuring one rollout
# Per run, one line in $WORK/runs.tsv:
# system n run from to rc verified cmd_s new_all_s last_old_s first_new_s sent failed errors non2xx p99_ms
printf '' >"$WORK/runs.tsv"
printf '' >"$WORK/events.tsv"
printf '' >"$WORK/failures.txt"

kv() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }
ns_to_s() { printf '%d.%09d' $(($1 / 1000000000)) $(($1 % 1000000000)); }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

# start_load URL KVFILE: fixed-rate load in the background; sets LG_PID.
start_load() {
	local url=$1 out=$2
	rm -f "$out.ready"
	"$LOADGEN" -url "$url" -rate "$RATE" -duration 600s -warmup 50 -ready-file "$out.ready" -json "$out.json" >"$out" 2>"$out.err" &
	LG_PID=$!
	local i
	for ((i = 0; i < 300; i++)); do
		[[ -f $out.ready ]] && return 0
		kill -0 "$LG_PID" 2>/dev/null || die "the load generator exited: $(cat "$out.err")"
		sleep 0.1
	done
	die "the load generator did not start within 30s"
}
stop_load() {
	kill -INT "$LG_PID" 2>/dev/null || true
	local rc=0
	wait "$LG_PID" || rc=$?
	LG_PID=
	((rc == 0)) || die "the load generator failed: $(cat "$1.err")"
}

# settle URL N: until a short burst of requests all succeed and reach N distinct
# servers of one version (the previous rollout is over, from the client's side).
settle() {
	local url=$1 n=$2 i out=$WORK/settle.kv
	for ((i = 0; i < 60; i++)); do
		"$LOADGEN" -url "$url" -rate 200 -duration 1s >"$out" 2>/dev/null || true
		if [[ $(kv "$out" failed) == 0 ]] && [[ $(awk '$1 == "version" { v++; s = $6 } END { print (v == 1) ? s : -1 }' "$out") == "$n" ]]; then
			return 0
		fi
		sleep 1
	done
	return 1
}

# rollout SYSTEM N RUN URL FROM TO UPDATE VERIFY EVENTLABEL NEWMARK: one measured
# rolling update from version FROM to TO under load. UPDATE and VERIFY are
# commands (run with eval); NEWMARK tells new servers apart in docker events.
rollout() {
	local sys=$1 n=$2 run=$3 url=$4 from=$5 to=$6 update=$7 verify=$8 label=$9 newmark=${10}
	local base=$WORK/runs/$sys-$n-$run lg=$WORK/runs/$sys-$n-$run.kv t0 t1 rc=0 ok=yes
	settle "$url" "$n" || log "  warning: $sys/$n: the service did not settle on $n servers of one version before run $run"
	# Docker keeps only its last 256 events, and health checks (3 exec events
	# per container and check) overflow that within seconds: stream them.
	docker events --since "$(ns_to_s "$(date +%s%N)")" --filter type=container --filter "label=$label" \
		--format '{{.TimeNano}}|{{.Action}}|{{index .Actor.Attributes "name"}}|{{index .Actor.Attributes "image"}}|{{index .Actor.Attributes "dev.kiln.revision"}}' \
		>"$base.events" 2>"$base.events.err" &
	EV_PID=$!
	start_load "$url" "$lg"
	sleep "$LEAD_SECONDS"
	t0=$(date +%s%N)
	eval "$update" >"$base.out" 2>"$base.err" || rc=$?
	t1=$(date +%s%N)
	if ((rc != 0)); then
		ok="no (exit $rc)"
		log "  $sys/$n run $run: the update exited $rc: $(tail -n 3 "$base.err" | tr '\n' ' ')"
	elif ! eval "$verify" >"$base.verify" 2>&1; then
		ok="no (verify: $(head -n1 "$base.verify"))"
		log "  $sys/$n run $run: not all servers run version $to after the update: $(cat "$base.verify")"
	fi
	sleep "$TAIL_SECONDS"
	stop_load "$lg"
	kill "$EV_PID" 2>/dev/null || true
	wait "$EV_PID" 2>/dev/null || true
	EV_PID=
	# From the client's side: when the n-th server of the new version answered
	# first, and when the old version answered last.
	local new_all last_old first_new
	new_all=$(awk -v v="$to" -v n="$n" -v t0="$t0" '$1 == "server" && $2 == v { f[++k] = $5 }
		END {
			if (k < n) { print "-"; exit }
			for (i = 2; i <= k; i++) { x = f[i]; for (j = i - 1; j >= 1 && f[j] > x; j--) f[j + 1] = f[j]; f[j + 1] = x }
			printf "%.3f", (f[n] - t0) / 1e9
		}' "$lg")
	last_old=$(awk -v v="$from" -v t0="$t0" '$1 == "version" && $2 == v { printf "%.3f", ($5 - t0) / 1e9 }' "$lg")
	first_new=$(awk -v v="$to" -v t0="$t0" '$1 == "version" && $2 == v { printf "%.3f", ($4 - t0) / 1e9 }' "$lg")
	local failed errors non2xx sent p99
	failed=$(kv "$lg" failed) errors=$(kv "$lg" errors) non2xx=$(kv "$lg" non_2xx) sent=$(kv "$lg" sent) p99=$(kv "$lg" svc_p99_ms)
	if ((failed > 0)); then
		{
			echo "$sys/$n run $run ($from -> $to): $failed failed of $sent; update issued at $(ns_to_s "$t0"), returned after $(secs "$t0" "$t1") s"
			awk '$1 == "error_sample" { $1 = "  "; print }' "$lg"
			awk -v t0="$t0" '$1 == "failure_ns" { printf "%s%.3f", (k++ ? ", " : "  at (s after the update was issued): "), ($2 - t0) / 1e9 } END { if (k) print "" }' "$lg"
		} >>"$WORK/failures.txt"
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$n" "$run" "$from" "$to" "$rc" "$ok" \
		"$(secs "$t0" "$t1")" "${new_all:--}" "${last_old:--}" "${first_new:--}" "$sent" "$failed" "$errors" "$non2xx" "$p99" >>"$WORK/runs.tsv"
	analyze_events "$base.events" "$t0" "$t1" "$newmark" "$sys" "$n" "$run" >>"$WORK/events.tsv"
	log "  $sys/$n run $run ($from -> $to): command $(secs "$t0" "$t1") s, new version on all $n servers at ${new_all:--} s, old version last served at ${last_old:--} s, failed $failed of $sent, ok: $ok"
}

# analyze_events FILE T0 T1 NEWMARK SYSTEM N RUN: where the time of a rollout goes,
# from Docker's container events (nanosecond times). A container is new if its
# image (Swarm) or its dev.kiln.revision label (kiln) is NEWMARK. Prints:
# system n run first_create_s step_s create_start_s start_ready_s old_stop_s last_old_kill_s
analyze_events() {
	awk -F'|' -v t0="$2" -v t1="$3" -v mark="$4" -v sys="$5" -v n="$6" -v run="$7" '
	function med(a, k,   i, j, t) {
		if (k == 0) return "-"
		for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
		return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	{
		t = $1; act = $2; name = $3; isnew = ($4 == mark || $5 == mark)
		if (act == "create" && isnew) { nc++; cr[nc] = t; crn[name] = t }
		if (act == "start" && isnew) { ns++; st[ns] = t; stn[name] = t }
		if (act == "health_status: healthy" && isnew && !(name in hl)) hl[name] = t
		if (act == "kill" && !isnew && !(name in kl)) { nk++; ki[nk] = t; kl[name] = t }
		if (act == "stop" && !isnew && (name in kl) && !(name in gone)) gone[name] = t
	}
	END {
		first = (nc > 0) ? sprintf("%.3f", (cr[1] - t0) / 1e9) : "-"
		k = 0; for (i = 2; i <= nc; i++) s[++k] = (cr[i] - cr[i - 1]) / 1e9; step = med(s, k)
		k = 0; for (x in stn) if (x in crn) c[++k] = (stn[x] - crn[x]) / 1e9; cs = med(c, k)
		# ready: a Docker health check passed (swarm-hc); for kiln, the i-th new
		# server is admitted just before the i-th old one gets SIGTERM.
		k = 0; for (x in hl) if (x in stn) r[++k] = (hl[x] - stn[x]) / 1e9
		if (k == 0 && sys ~ /^kiln/) for (i = 1; i <= ns && i <= nk; i++) r[++k] = (ki[i] - st[i]) / 1e9
		rd = med(r, k)
		k = 0; for (x in gone) g[++k] = (gone[x] - kl[x]) / 1e9; og = med(g, k)
		lk = (nk > 0) ? sprintf("%.3f", (ki[nk] - t0) / 1e9) : "-"
		printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sys, n, run, first, step, cs, rd, og, lk
	}' "$1"
}

# ---------------------------------------------------------------- kiln
KILN_DIR=
KILN_SVC=
kiln_start() { # SYSTEM N
	local sys=$1 n=$2 mh=1s
	[[ $sys == kiln-mh0 ]] && mh=0s
	KILN_SVC=bench-$ID-$sys-$n
	KILN_DIR=$WORK/cells/$sys-$n
	make_app "$KILN_DIR" "$KILN_SVC" "$n" "$mh"
	free_port
	KILN_PORT=$PORT
	export KILN_VAR_listen=127.0.0.1:$KILN_PORT
	# Bake both versions first (not timed), so that apply only finds them baked.
	local v out
	for v in 2 1; do
		out=$(cd "$KILN_DIR" && KILN_VAR_version=$v "$KILN" bake 2>>"$KILN_DIR/bake.err") ||
			die "kiln bake failed in $KILN_DIR: $(tail -n 20 "$KILN_DIR/bake.err")"
		MY_DIGESTS+=("$(grep -o 'sha256:[0-9a-f]*' <<<"$out" | head -n1 | cut -d: -f2)")
	done
	log "$sys/$n: kiln up ($n replicas, front door 127.0.0.1:$KILN_PORT)"
	(cd "$KILN_DIR" && exec env KILN_VAR_version=1 "$KILN" up >"$KILN_DIR/up.out" 2>"$KILN_DIR/up.err") &
	local pid=$! i
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
# kiln_verify REVISION N: the service is at REVISION with N healthy servers, all
# of that revision.
kiln_verify() {
	local st
	st=$(cd "$KILN_DIR" && "$KILN" status -json) || { echo "kiln status failed"; return 1; }
	awk -v svc="$KILN_SVC" -v rev="$1" -v n="$2" '
		/"name": / && !insvc { gsub(/[",]/, "", $2); if ($2 == svc) insvc = 1 }
		insvc && /"servers": / { inservers = 1 }
		insvc && !inservers && /"revision": / { gsub(/,/, "", $2); srev = $2 }
		insvc && !inservers && /"healthy": / { gsub(/,/, "", $2); healthy = $2 }
		insvc && inservers && /"revision": / { gsub(/,/, "", $2); total++; if ($2 == rev) good++ }
		insvc && inservers && /^    }/ { insvc = 0; inservers = 0 }
		END {
			if (srev != rev || healthy != n || total != n || good != n) {
				printf "service revision %s (want %s), %s healthy, %d servers of which %d of revision %s (want %d)\n", srev, rev, healthy, total, good, rev, n
				exit 1
			}
		}' <<<"$st"
}

# ---------------------------------------------------------------- Swarm
SW_SVC=
sw_start() { # SYSTEM N
	local sys=$1 n=$2 img=$IMG
	[[ $sys == swarm-hc ]] && img=$IMG_HC
	SW_IMG=$img
	SW_SVC=bench-$ID-$sys-$n
	free_port
	SW_PORT=$PORT
	log "$sys/$n: docker service create ($n replicas), HAProxy on 127.0.0.1:$SW_PORT"
	SWARM_SVCS+=("$SW_SVC")
	docker service create --name "$SW_SVC" --replicas "$n" --network "$NET" --endpoint-mode dnsrr \
		--no-resolve-image --update-order start-first --update-parallelism 1 --update-delay 0s \
		--update-monitor 1s --update-failure-action rollback --detach=false --quiet \
		"$img:v1" >"$WORK/cells/$SW_SVC.create" 2>&1 ||
		die "docker service create $SW_SVC failed: $(tail -n 5 "$WORK/cells/$SW_SVC.create")"
	# HAProxy finds the tasks through Swarm's DNS (tasks.SERVICE), health-checks
	# them every second and retries a request that could not be sent on another
	# task: the usual self-hosted front of a dnsrr service.
	local cfg=$WORK/cells/$SW_SVC.haproxy.cfg
	cat >"$cfg" <<EOF
global
    maxconn 4096
resolvers docker
    nameserver dns 127.0.0.11:53
    resolve_retries 3
    timeout resolve 1s
    timeout retry   1s
    hold other      1s
    hold refused    1s
    hold nx         1s
    hold timeout    1s
    hold valid      1s
    hold obsolete   1s
    accepted_payload_size 8192
defaults
    mode http
    timeout connect 3s
    timeout client  30s
    timeout server  30s
    timeout queue   5s
    retries 3
    option redispatch 1
    retry-on all-retryable-errors
frontend front
    bind :8080
    default_backend tasks
backend tasks
    balance roundrobin
    option httpchk GET /healthz
    default-server check inter 1s fall 1 rise 1 resolvers docker init-addr none resolve-prefer ipv4
    server-template task $((2 * n + 2)) tasks.$SW_SVC:8080
EOF
	LB_CTRS+=("bench-$ID-lb-$sys-$n")
	docker run -d --name "bench-$ID-lb-$sys-$n" --network "$NET" -p "127.0.0.1:$SW_PORT:8080" \
		-v "$cfg:/haproxy.cfg:ro" "$HAP_IMG" -db -f /haproxy.cfg >/dev/null ||
		die "could not start HAProxy for $SW_SVC"
	settle "http://127.0.0.1:$SW_PORT/" "$n" ||
		die "HAProxy in front of $SW_SVC did not reach $n servers within 60s: $(docker logs --tail 20 "bench-$ID-lb-$sys-$n" 2>&1)"
}
sw_stop() {
	docker rm -f "bench-$ID-lb-$1-$2" >/dev/null 2>&1 || true
	docker service rm "$SW_SVC" >/dev/null 2>&1 || true
	wait_gone "com.docker.swarm.service.name=$SW_SVC" 60 || log "warning: tasks of $SW_SVC still running 60s after docker service rm"
}
# sw_update VERSION: the timed command.
sw_update() {
	timeout 300 docker service update --image "$SW_IMG:v$1" --no-resolve-image --detach=false "$SW_SVC" || return $?
	local state
	state=$(docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$SW_SVC")
	[[ $state == completed ]] || { echo "update state: $state" >&2; return 3; }
}
# sw_verify VERSION N: N tasks desired running, all running the image of VERSION.
sw_verify() {
	local lines
	lines=$(docker service ps "$SW_SVC" --filter desired-state=running --format '{{.Image}}|{{.CurrentState}}')
	awk -F'|' -v img="$SW_IMG:v$1" -v n="$2" '
		{ total++; if ($1 == img && $2 ~ /^Running/) good++ }
		END { if (total != n || good != n) { printf "%d tasks desired running, %d of them running %s (want %d)\n", total, good, img, n; exit 1 } }' <<<"$lines"
}

# ---------------------------------------------------------------- latency
# The front door against one server, interleaved; one line per measurement in
# $WORK/latency.tsv: target round p50 p99 (from the send) p50 p99 (from the
# scheduled time) failed sent late_p99
printf '' >"$WORK/latency.tsv"
LAT_DONE=0
measure_latency() {
	local door=127.0.0.1:$KILN_PORT direct r t target out
	direct=$(cd "$KILN_DIR" && "$KILN" status -json | awk -F'"' '/"address": / { print $4; exit }')
	[[ $direct =~ ^127\.0\.0\.1:[0-9]+$ ]] || die "no loopback server address in kiln status -json (got '$direct')"
	LAT_DOOR=$door LAT_DIRECT=$direct
	log "front-door latency: $LAT_ROUNDS x ${LAT_SECONDS}s at $LAT_RATE rps each, front door $door vs server $direct"
	for ((r = 1; r <= LAT_ROUNDS; r++)); do
		local order="door direct"
		((r % 2 == 0)) && order="direct door"
		for t in $order; do
			if [[ $t == door ]]; then target=$door; else target=$direct; fi
			out=$WORK/runs/latency-$t-$r.kv
			"$LOADGEN" -url "http://$target/" -rate "$LAT_RATE" -duration "${LAT_SECONDS}s" -warmup 200 -json "$out.json" >"$out" 2>"$out.err" ||
				die "the load generator failed: $(cat "$out.err")"
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" "$(kv "$out" svc_p50_ms)" "$(kv "$out" svc_p99_ms)" \
				"$(kv "$out" lat_p50_ms)" "$(kv "$out" lat_p99_ms)" "$(kv "$out" failed)" "$(kv "$out" sent)" "$(kv "$out" late_p99_ms)" >>"$WORK/latency.tsv"
			log "  $t round $r: p50 $(kv "$out" svc_p50_ms) ms, p99 $(kv "$out" svc_p99_ms) ms, failed $(kv "$out" failed) of $(kv "$out" sent)"
		done
	done
	LAT_DONE=1
}

# ---------------------------------------------------------------- the runs
NOISE_BEFORE="$(docker ps -q | wc -l) containers running, load average $(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s)
for n in $REPLICAS; do
	for sys in $SYSTEMS; do
		case $sys in
		kiln | kiln-mh0)
			kiln_start "$sys" "$n"
			for ((run = 1; run <= RUNS; run++)); do
				from=$(((run % 2) ? 1 : 2)) to=$(((run % 2) ? 2 : 1))
				rollout "$sys" "$n" "$run" "http://127.0.0.1:$KILN_PORT/" "$from" "$to" \
					"KILN_VAR_version=$to timeout 300 $(q "$KILN") -C $(q "$KILN_DIR") apply" \
					"kiln_verify $((run + 1)) $n" "dev.kiln.service=$KILN_SVC" "$((run + 1))"
			done
			if [[ $LATENCY == 1 && $sys == kiln && $n == "$LAT_REPLICAS" ]]; then measure_latency; fi
			kiln_stop
			;;
		swarm | swarm-hc)
			sw_start "$sys" "$n"
			for ((run = 1; run <= RUNS; run++)); do
				from=$(((run % 2) ? 1 : 2)) to=$(((run % 2) ? 2 : 1))
				rollout "$sys" "$n" "$run" "http://127.0.0.1:$SW_PORT/" "$from" "$to" \
					"sw_update $to" "sw_verify $to $n" "com.docker.swarm.service.name=$SW_SVC" "$SW_IMG:v$to"
			done
			sw_stop "$sys" "$n"
			;;
		esac
	done
done
# Latency measured apart if the kiln cell of that size was not part of the run.
if [[ $LATENCY == 1 && $LAT_DONE == 0 ]]; then
	kiln_start kiln "$LAT_REPLICAS"
	measure_latency
	kiln_stop
fi
ELAPSED=$(($(date +%s) - START))
NOISE_AFTER="$(docker ps -q | wc -l) containers running, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
# stats FILE COLUMN FILTER...: "median min max count" of a column of runs.tsv
# over the rows whose system and size match.
stats() {
	awk -F'\t' -v sys="$2" -v n="$3" -v col="$4" '
		$1 == sys && $2 == n && $col != "-" && $col != "" { v[++k] = $col + 0 }
		END {
			if (k == 0) { print "- - - 0"; exit }
			for (i = 2; i <= k; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
			m = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
			print m, v[1], v[k], k
		}' "$1"
}
sum_col() { awk -F'\t' -v sys="$2" -v n="$3" -v col="$4" '$1 == sys && $2 == n { s += $col } END { print s + 0 }' "$1"; }
fmt_s() { awk -v m="$1" -v lo="$2" -v hi="$3" 'BEGIN { if (m == "-") { print "–"; exit } printf "%.2f s (%.2f–%.2f)", m, lo, hi }'; }
title() {
	case $1 in
	kiln) echo "kiln: health every 1s, min_healthy 1s" ;;
	swarm) echo "Swarm: no health check, monitor 1s" ;;
	kiln-mh0) echo "kiln: health every 1s, min_healthy 0s" ;;
	swarm-hc) echo "Swarm: HEALTHCHECK every 1s, monitor 1s" ;;
	esac
}
pair() { case $1 in kiln) echo swarm ;; kiln-mh0) echo swarm-hc ;; esac; }
ratio() { # SYSTEM N: kiln's median command time over its Swarm counterpart's
	local other m o
	other=$(pair "$1")
	if [[ -z $other ]] || ! has "$other" "$SYSTEMS"; then echo "–"; return; fi
	read -r m _ _ _ < <(stats "$WORK/runs.tsv" "$1" "$2" 8)
	read -r o _ _ _ < <(stats "$WORK/runs.tsv" "$other" "$2" 8)
	awk -v a="$m" -v b="$o" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "–"; else printf "%.2f×", a / b }'
}
lat_med() { # TARGET COLUMN
	awk -F'\t' -v t="$1" -v col="$2" '$1 == t { v[++k] = $col + 0 }
		END { if (k == 0) { print "-"; exit }
			for (i = 2; i <= k; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
			printf "%.3f", (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2 }' "$WORK/latency.tsv"
}
lat_range() {
	awk -F'\t' -v t="$1" -v col="$2" '$1 == t { x = $col + 0; if (k++ == 0 || x < lo) lo = x; if (x > hi) hi = x }
		END { if (k) printf "%.3f–%.3f", lo, hi }' "$WORK/latency.tsv"
}
ev_med() { # SYSTEM N COLUMN of events.tsv: median over runs
	awk -F'\t' -v sys="$1" -v n="$2" -v col="$3" '$1 == sys && $2 == n && $col != "-" { v[++k] = $col + 0 }
		END { if (k == 0) { print "–"; exit }
			for (i = 2; i <= k; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
			printf "%.2f", (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2 }' "$WORK/events.tsv"
}

report() {
	local n sys
	echo "# Rolling update: kiln vs Docker Swarm ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "Rolling update of the example service (examples/hello) from one version to the other, one server at a time, under a continuous load of $RATE requests/s; median (min–max) of $RUNS run(s) per row."
	echo
	echo "| system | replicas | rollout time (update command) | × Swarm | new version on all servers (client view) | old version last served (client view) | failed requests (errors + non-2xx) / sent | runs OK |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for n in $REPLICAS; do
		for sys in $SYSTEMS; do
			local f e x s okc
			read -r c1 c2 c3 _ < <(stats "$WORK/runs.tsv" "$sys" "$n" 8)
			read -r a1 a2 a3 _ < <(stats "$WORK/runs.tsv" "$sys" "$n" 9)
			read -r o1 o2 o3 _ < <(stats "$WORK/runs.tsv" "$sys" "$n" 10)
			f=$(sum_col "$WORK/runs.tsv" "$sys" "$n" 13)
			e=$(sum_col "$WORK/runs.tsv" "$sys" "$n" 14)
			x=$(sum_col "$WORK/runs.tsv" "$sys" "$n" 15)
			s=$(sum_col "$WORK/runs.tsv" "$sys" "$n" 12)
			okc=$(awk -F'\t' -v sys="$sys" -v n="$n" '$1 == sys && $2 == n { t++; if ($7 == "yes") k++ } END { printf "%d/%d", k, t }' "$WORK/runs.tsv")
			printf '| %s | %s | %s | %s | %s | %s | %s (%s + %s) / %s | %s |\n' "$(title "$sys")" "$n" "$(fmt_s "$c1" "$c2" "$c3")" \
				"$(ratio "$sys" "$n")" "$(fmt_s "$a1" "$a2" "$a3")" "$(fmt_s "$o1" "$o2" "$o3")" "$f" "$e" "$x" "$s" "$okc"
		done
	done
	echo
	echo "- *rollout time*: from issuing the update (\`kiln apply\` with the other version; \`docker service update --image ... --detach=false\`) to the command returning; it returns once every server runs the new version (verified afterwards with \`kiln status -json\` / \`docker service ps\`). kiln's includes the CLI's no-op bake check (both versions are baked beforehand)."
	echo "- *× Swarm*: kiln's median rollout time over Swarm's with the matching health setting (kiln vs Swarm without health check; kiln min_healthy 0s vs Swarm with HEALTHCHECK)."
	echo "- *client view*: seconds after the update was issued, from the load generator's responses (each names its version and server): when the last of the N servers of the new version answered its first request, and when the old version answered last. Load ran from ${LEAD_SECONDS}s before the update to ${TAIL_SECONDS}s after the command returned."
	echo "- *failed requests*: counted over that whole window: transport errors + responses outside 2xx."
	echo
	if ((LAT_DONE)); then
		local dp50 dp99 xp50 xp99 sp50 sp99 sx50 sx99
		dp50=$(lat_med door 3) dp99=$(lat_med door 4) xp50=$(lat_med direct 3) xp99=$(lat_med direct 4)
		sp50=$(lat_med door 5) sp99=$(lat_med door 6) sx50=$(lat_med direct 5) sx99=$(lat_med direct 6)
		echo "## Front-door latency at $LAT_RATE requests/s"
		echo
		echo "kiln service with $LAT_REPLICAS servers; $LAT_ROUNDS interleaved pairs of ${LAT_SECONDS}s runs; median over the runs (range in brackets). Latency from the moment each request was sent; in brackets on the right, from its scheduled time (wrk2-style, includes the generator's own lateness)."
		echo
		echo "| target | p50 | p99 | p50 / p99 from schedule | failed / sent |"
		echo "| --- | ---: | ---: | ---: | ---: |"
		printf '| kiln front door (%s → %s servers) | %s ms (%s) | %s ms (%s) | %s / %s ms | %s |\n' "$LAT_DOOR" "$LAT_REPLICAS" "$dp50" "$(lat_range door 3)" "$dp99" "$(lat_range door 4)" "$sp50" "$sp99" \
			"$(awk -F'\t' '$1 == "door" { f += $7; s += $8 } END { printf "%d / %d", f, s }' "$WORK/latency.tsv")"
		printf '| one server directly (%s, its published port) | %s ms (%s) | %s ms (%s) | %s / %s ms | %s |\n' "$LAT_DIRECT" "$xp50" "$(lat_range direct 3)" "$xp99" "$(lat_range direct 4)" "$sx50" "$sx99" \
			"$(awk -F'\t' '$1 == "direct" { f += $7; s += $8 } END { printf "%d / %d", f, s }' "$WORK/latency.tsv")"
		printf '| **added by the front door** | **%s ms** | **%s ms** | %s / %s ms | |\n' \
			"$(awk -v a="$dp50" -v b="$xp50" 'BEGIN { printf "%+.3f", a - b }')" "$(awk -v a="$dp99" -v b="$xp99" 'BEGIN { printf "%+.3f", a - b }')" \
			"$(awk -v a="$sp50" -v b="$sx50" 'BEGIN { printf "%+.3f", a - b }')" "$(awk -v a="$sp99" -v b="$sx99" 'BEGIN { printf "%+.3f", a - b }')"
		echo
	fi
	echo "## Goals"
	echo
	echo "| goal | result | met |"
	echo "| --- | --- | :---: |"
	for n in $REPLICAS; do
		if has kiln "$SYSTEMS" && has swarm "$SYSTEMS"; then
			local r
			r=$(ratio kiln "$n")
			printf '| kiln rollout time ≤ 0.6× Swarm'"'"'s, %s replicas | %s | %s |\n' "$n" "$r" \
				"$(awk -v r="${r%×}" 'BEGIN { if (r == "–") print "?"; else print (r + 0 <= 0.6) ? "yes" : "**no**" }')"
		fi
	done
	if ((WANT_KILN)); then
		local kf=0 ks=0 s2
		for s2 in kiln kiln-mh0; do
			has "$s2" "$SYSTEMS" || continue
			for n in $REPLICAS; do
				kf=$((kf + $(sum_col "$WORK/runs.tsv" "$s2" "$n" 13)))
				ks=$((ks + $(sum_col "$WORK/runs.tsv" "$s2" "$n" 12)))
			done
		done
		if ((ks > 0)); then
			printf '| zero failed requests during kiln rollouts | %d failed of %d | %s |\n' "$kf" "$ks" "$( ((kf == 0)) && echo yes || echo '**no**')"
		fi
	fi
	if ((LAT_DONE)); then
		local add
		add=$(awk -v a="$(lat_med door 4)" -v b="$(lat_med direct 4)" 'BEGIN { printf "%.3f", a - b }')
		printf '| front door adds < 1 ms at p99, %s rps | %+.3f ms | %s |\n' "$LAT_RATE" "$add" "$(awk -v a="$add" 'BEGIN { print (a < 1) ? "yes" : "**no**" }')"
	fi
	echo
	echo "## Where the time goes"
	echo
	echo "From Docker's container events during the timed runs (median over the runs of each run's median), seconds. *step*: between the creations of two consecutive new servers. *ready*: kiln: container start → the old server it replaces gets SIGTERM (health gate + admission); Swarm with HEALTHCHECK: start → first healthy check. *old stop*: SIGTERM to an old server → stopped. *last old server SIGTERM*: after the update was issued (compare with the rollout time)."
	echo
	echo "| system | replicas | first new server created | step | create → start | ready | old stop | last old server SIGTERM |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for n in $REPLICAS; do
		for sys in $SYSTEMS; do
			printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$sys" "$n" "$(ev_med "$sys" "$n" 4)" "$(ev_med "$sys" "$n" 5)" \
				"$(ev_med "$sys" "$n" 6)" "$(ev_med "$sys" "$n" 7)" "$(ev_med "$sys" "$n" 8)" "$(ev_med "$sys" "$n" 9)"
		done
	done
	echo
	echo "## Every run"
	echo
	echo "| system | replicas | run | version | rollout time | new version on all servers | old version last served | failed (errors + non-2xx) / sent | p99 latency during the run | OK |"
	echo "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"
	awk -F'\t' '{ printf "| %s | %s | %s | %s → %s | %.2f s | %s s | %s s | %s (%s + %s) / %s | %s ms | %s |\n", $1, $2, $3, $4, $5, $8, $9, $10, $13, $14, $15, $12, $16, $7 }' "$WORK/runs.tsv"
	echo
	if [[ -s $WORK/failures.txt ]]; then
		echo "Failed requests:"
		echo
		echo '```'
		cat "$WORK/failures.txt"
		echo '```'
		echo
	fi
	echo "## Setup"
	echo
	echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); $(go version | awk '{print $3}')"
	echo "- Docker: engine $(docker version -f '{{.Server.Version}}' 2>/dev/null), storage driver $(docker info -f '{{.Driver}}' 2>/dev/null)"
	echo "- other load on the machine: before the run $NOISE_BEFORE; after it $NOISE_AFTER. Other containers (tests) running meanwhile make the numbers noisier."
	echo "- kiln: built from $KILN_FROM; the example's kiln.hcl with replicas = N, health \`interval = \"1s\"\`, \`update { strategy = \"rolling\", max_surge = 1, min_healthy = \"1s\" }\` (\"0s\" for kiln-mh0); \`kiln up\` deploys version 1, each run is \`KILN_VAR_version=V kiln apply\`, alternating 1 → 2 → 1."
	if ((WANT_SWARM)); then
		echo "- Swarm: single node, \`docker service create --endpoint-mode dnsrr --no-resolve-image --update-order start-first --update-parallelism 1 --update-delay 0s --update-monitor 1s --update-failure-action rollback\`; each run is \`docker service update --image bench-…-hello:vV --no-resolve-image --detach=false\`, then \`UpdateStatus.State\` must be \`completed\`. Images: the same kiln-baked image (\`kiln bake --load\`, retagged). swarm has no health check (the image is FROM scratch, no shell), so Swarm moves on as soon as a new task runs; swarm-hc adds a static Go health-check binary and \`HEALTHCHECK --interval=1s --timeout=1s --retries=1\` (a derived image), which Swarm waits for."
		echo "- Swarm's load balancer: HAProxy $HAP_VERSION (Debian's package, in a container on the service's overlay network) discovering tasks through Swarm's DNS (\`tasks.SERVICE\`, re-resolved every 1s), health-checking them every 1s (\`fall 1 rise 1\`), retrying failed connections on another task (\`retries 3\`, \`option redispatch\`, \`retry-on all-retryable-errors\`). Swarm's own routing mesh (\`--publish\`, VIP) could not be used: it needs IPVS, which this kernel lacks (\`CONFIG_IP_VS\` not set), so published ports never answer. HAProxy is likely kinder to Swarm than the routing mesh (which does not health-check or retry)."
	fi
	echo "- load: bench/loadgen, open-loop at a fixed rate (a request is sent at its scheduled time whatever the state of earlier ones), Go net/http client with keep-alive, 10s timeout; only loopback addresses are targeted."
	echo "- wall time of the measurements: ${ELAPSED} s"
}

mkdir -p "$(dirname "$RESULTS_FILE")"
report | tee "$RESULTS_FILE"
log "results written to $RESULTS_FILE"
