#!/usr/bin/env bash
# bench/heal.sh - "the fleet stays exactly the image": how fast kiln replaces a
# killed server (compared with Docker Swarm, on this machine and in the same
# run), how fast it replaces a server someone exec'd into, and what its
# controller costs while idle with 50 servers.
#
# See bench/README.md for what is measured and how. Quick start:
#
#     bench/heal.sh                    # full run (RUNS=5), ~4 min on 2 cores
#     bench/heal.sh -c kill -s kiln    # only some cases / systems
#     bench/heal.sh -h                 # all options
#
# The results table goes to stdout and to bench/results/heal-<date>.md;
# progress goes to stderr.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

# ---------------------------------------------------------------- settings
RUNS=${RUNS:-5}                    # kills per system, execs
CASES=${CASES:-"kill drift idle"}
SYSTEMS=${SYSTEMS:-"kiln swarm swarm-d0"}
REPLICAS=${REPLICAS:-4}            # servers of the kill and drift services
INTERVAL=${INTERVAL:-1s}           # health-check interval, kiln and Swarm alike
IDLE_REPLICAS=${IDLE_REPLICAS:-50}
IDLE_MEMORY=${IDLE_MEMORY:-32MiB}  # per server of the idle service
IDLE_SETTLE=${IDLE_SETTLE:-15}     # seconds between "all healthy" and sampling
IDLE_SECONDS=${IDLE_SECONDS:-60}   # sampling window
SPACING=${SPACING:-2}              # seconds of calm between two trials
TRIAL_TIMEOUT=${TRIAL_TIMEOUT:-60s}
PORT_BASE=${PORT_BASE:-18700}
BENCH_SDE=${BENCH_SDE:-1700000000} # SOURCE_DATE_EPOCH
EXAMPLE_DIR=${EXAMPLE_DIR:-$REPO_DIR/examples/hello}
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results}
RESULTS_FILE=${RESULTS_FILE:-$RESULTS_DIR/heal-$(date +%Y-%m-%d).md}
KILN_BIN=${KILN_BIN:-}
KILN_REF=${KILN_REF:-}             # build kiln from this commit instead of the work tree
KEEP_WORK=${KEEP_WORK:-0}

usage() {
	cat <<EOF
usage: bench/heal.sh [-n RUNS] [-c "kill drift idle"] [-s "kiln swarm swarm-d0"] [-k] [-h]

  -n RUNS     kills per system and execs (default $RUNS; at least 5 for numbers
              worth quoting)
  -c CASES    what to measure (default "$CASES")
                kill   docker kill of one of $REPLICAS servers -> a healthy replacement serves
                drift  docker exec into a server -> it is replaced (kiln only: Swarm
                       does not watch for drift)
                idle   the kiln daemon's CPU and memory with $IDLE_REPLICAS healthy servers
  -s SYSTEMS  who heals the kills (default "$SYSTEMS")
                kiln      kiln, health check every $INTERVAL, unhealthy_threshold 3 (default)
                swarm     Docker Swarm, HEALTHCHECK every $INTERVAL, its default
                          restart policy (restart delay 5s)
                swarm-d0  as swarm, with --restart-delay 0s
  -k          keep the temporary work directory (for debugging)
  -h          this help

Environment: RUNS, CASES, SYSTEMS, REPLICAS ($REPLICAS), INTERVAL ($INTERVAL),
IDLE_REPLICAS ($IDLE_REPLICAS), IDLE_MEMORY ($IDLE_MEMORY), IDLE_SETTLE ($IDLE_SETTLE s),
IDLE_SECONDS ($IDLE_SECONDS s), SPACING ($SPACING s), TRIAL_TIMEOUT ($TRIAL_TIMEOUT),
PORT_BASE ($PORT_BASE), BENCH_SDE, EXAMPLE_DIR, KILN_BIN (use this kiln binary),
KILN_REF (build kiln from that commit, e.g. HEAD, via git archive), KEEP_WORK=1,
RESULTS_FILE.
EOF
}

while getopts ":n:c:s:kh" opt; do
	case $opt in
	n) RUNS=$OPTARG ;;
	c) CASES=$OPTARG ;;
	s) SYSTEMS=$OPTARG ;;
	k) KEEP_WORK=1 ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }
has() { local w; for w in $2; do [[ $w == "$1" ]] && return 0; done; return 1; }

[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || die "RUNS must be a positive integer (got '$RUNS')"
((RUNS >= 5)) || log "warning: RUNS=$RUNS < 5; medians will be noisy"
[[ $REPLICAS =~ ^[0-9]+$ && $REPLICAS -ge 2 ]] || die "REPLICAS must be an integer >= 2"
[[ $IDLE_REPLICAS =~ ^[0-9]+$ && $IDLE_REPLICAS -ge 1 ]] || die "IDLE_REPLICAS must be a positive integer"
for c in $CASES; do has "$c" "kill drift idle" || die "unknown case '$c' (kill, drift, idle)"; done
for s in $SYSTEMS; do has "$s" "kiln swarm swarm-d0" || die "unknown system '$s' (kiln, swarm, swarm-d0)"; done
WANT_SWARM=0
if has kill "$CASES"; then for s in $SYSTEMS; do [[ $s == swarm* ]] && WANT_SWARM=1; done; fi
WANT_KILN_FLEET=0 # the services of the kill and drift cases
if has drift "$CASES" || { has kill "$CASES" && has kiln "$SYSTEMS"; }; then WANT_KILN_FLEET=1; fi

# ---------------------------------------------------------------- preflight
for c in go jq curl awk; do command -v $c >/dev/null || die "$c is not on PATH"; done
command -v docker >/dev/null || die "the docker CLI is not installed"
if ! docker_err=$(docker info 2>&1 >/dev/null); then
	die "the Docker daemon is not reachable ('docker info' failed):
$docker_err
Start it (e.g. 'service docker start', or scripts/ensure-docker) and run again."
fi
others=$(pgrep -af 'bench/(rollout|bake|pipeline)\.sh' | grep -v "^$$ " || true)
[[ -z $others ]] || log "warning: other benchmarks are running; the numbers will be noisier:
$others"

# Swarm: use the node if it is already a manager; initialize a single-node swarm
# otherwise, and leave it at the end (unless someone else has services on it by then).
SWARM_INIT=0
if ((WANT_SWARM)); then
	state=$(docker info --format '{{.Swarm.LocalNodeState}}')
	case $state in
	active)
		[[ $(docker info --format '{{.Swarm.ControlAvailable}}') == true ]] ||
			die "this Docker engine is in a swarm but not a manager; run on a manager or leave Swarm out (-s kiln)"
		log "Docker is already a swarm manager: using it (the swarm is left as it is at the end)"
		;;
	inactive)
		log "initializing a single-node swarm (docker swarm init --advertise-addr 127.0.0.1); it is left at the end"
		docker swarm init --advertise-addr 127.0.0.1 >/dev/null || die "docker swarm init failed"
		SWARM_INIT=1
		;;
	*) die "the swarm state of this Docker engine is '$state'; fix it (docker swarm leave --force?) or leave Swarm out (-s kiln)" ;;
	esac
fi

# ---------------------------------------------------------------- work dir and cleanup
ID=h$$ # in the name of everything this run creates
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-heal.XXXXXX")
mkdir -p "$WORK/bin" "$WORK/trials"
declare -a KILN_SVCS=() SWARM_SVCS=() MY_IMAGES=() MY_DIGESTS=()
KILN_ACTIVE= # DIR|PID|SERVICE... of the running kiln up, if any
PRE_KILN_IMGS=$(docker image ls --format '{{.Repository}}:{{.Tag}}' 'kiln/img' 2>/dev/null | sort -u || true)

cleanup() {
	local rc=$? dir pid svc
	trap - INT TERM
	set +e
	if [[ -n $KILN_ACTIVE ]]; then
		read -r dir pid svcs <<<"${KILN_ACTIVE//|/ }"
		if kill -0 "$pid" 2>/dev/null; then
			for svc in $svcs; do timeout 300 "$KILN" -C "$dir" destroy "$svc" >/dev/null 2>&1; done
			kill -INT "$pid" 2>/dev/null
			for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
			kill -KILL "$pid" 2>/dev/null
		fi
	fi
	# Whatever a dead daemon left, by label.
	for svc in "${KILN_SVCS[@]}"; do
		docker ps -aq --filter "label=dev.kiln.service=$svc" | xargs -r docker rm -f >/dev/null 2>&1
	done
	for svc in "${SWARM_SVCS[@]}"; do docker service rm "$svc" >/dev/null 2>&1; done
	for svc in "${SWARM_SVCS[@]}"; do wait_gone "com.docker.swarm.service.name=$svc" 60; done
	for img in "${MY_IMAGES[@]}"; do
		for _ in 1 2 3 4 5; do docker rmi "$img" >/dev/null 2>&1 && break; sleep 2; done
	done
	# kiln loads the images it deploys as kiln/img:<digest>: remove those this run
	# baked, if they were not there before and nothing uses them.
	for d in "${MY_DIGESTS[@]}"; do
		grep -qx "kiln/img:$d" <<<"$PRE_KILN_IMGS" || docker rmi "kiln/img:$d" >/dev/null 2>&1
	done
	if ((SWARM_INIT)); then
		if [[ -z $(docker service ls -q 2>/dev/null) ]]; then
			docker swarm leave --force >/dev/null 2>&1
		else
			log "warning: not leaving the swarm this run initialized: other services run on it now ($(docker service ls --format '{{.Name}}' | paste -sd' '))"
		fi
	fi
	if [[ $KEEP_WORK == 1 || $rc -ne 0 ]]; then
		log "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	return $rc
}
# wait_gone LABEL SECONDS: until no container with LABEL exists.
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
log "building the probe (bench/probe)"
(cd "$BENCH_DIR/probe" && go build -o "$WORK/bin/probe" .) >&2 || die "go build of bench/probe failed"
# The Swarm image's health check is the one bench/rollout.sh uses too.
(cd "$BENCH_DIR/loadgen" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$WORK/bin/healthcheck" ./healthcheck) >&2 ||
	die "go build of bench/loadgen/healthcheck failed"
PROBE=$WORK/bin/probe

export SOURCE_DATE_EPOCH=$BENCH_SDE

# ---------------------------------------------------------------- the example
[[ -f $EXAMPLE_DIR/kiln.hcl ]] || die "$EXAMPLE_DIR/kiln.hcl not found"
TEMPLATE=$WORK/app
cp -a "$EXAMPLE_DIR/." "$TEMPLATE"
rm -rf "$TEMPLATE/.kiln"
# The image is renamed bench-heal-hello, so that `kiln bake --load` (for Swarm)
# does not overwrite the kiln/hello:latest that the end-to-end tests use.
sed -i -e 's/^image "hello" {/image "bench-heal-hello" {/' -e 's/= image\.hello$/= image.bench-heal-hello/' "$TEMPLATE/kiln.hcl"
for want in '^image "bench-heal-hello" {' '= image\.bench-heal-hello$' '^service "hello" {' '^ *replicas *=' '^ *listen *=' '^ *interval *='; do
	grep -q -- "$want" "$TEMPLATE/kiln.hcl" || die "could not set up the example: no line of $EXAMPLE_DIR/kiln.hcl matches /$want/; has it changed shape? (it needs image \"hello\", service \"hello\" with replicas, listen and a health block with interval)"
done
# The service block, and the rest of the spec without it.
awk '/^service "hello" \{/ { p = 1 } p { print } p && /^}/ { exit }' "$TEMPLATE/kiln.hcl" >"$WORK/service.tmpl"
awk '/^service "hello" \{/ { skip = 1 } !skip { print } skip && /^}/ { skip = 0 }' "$TEMPLATE/kiln.hcl" >"$WORK/rest.hcl"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
NEXT_PORT=$PORT_BASE
free_port() { # sets PORT to a port nobody listens on, a new one on every call
	local i
	for ((i = 0; i < 200; i++)); do
		NEXT_PORT=$((NEXT_PORT + 1))
		port_busy "$NEXT_PORT" || { PORT=$NEXT_PORT; return 0; }
	done
	die "no free port above $PORT_BASE (set PORT_BASE)"
}

# make_app DIR REPLICAS MEMORY SERVICE...: a copy of the example with one service
# block per SERVICE (the example's, renamed), each with REPLICAS servers, a health
# check every $INTERVAL and its own front door (PORTS[SERVICE]); MEMORY ("" for the
# example's default) sets resources { memory }.
declare -A PORTS=()
make_app() {
	local dir=$1 n=$2 mem=$3 svc
	shift 3
	mkdir -p "$dir"
	cp -a "$TEMPLATE/." "$dir"
	cp "$WORK/rest.hcl" "$dir/kiln.hcl"
	for svc; do
		free_port
		PORTS[$svc]=$PORT
		{
			sed -e "s/^service \"hello\" {/service \"$svc\" {/" -e "s/^\( *replicas *=\).*/\1 $n/" \
				-e "s/^\( *interval *=\).*/\1 \"$INTERVAL\"/" -e "s/^\( *listen *=\).*/\1 \"127.0.0.1:$PORT\"/" \
				"$WORK/service.tmpl" | sed '$d'
			[[ -z $mem ]] || printf '\n  resources {\n    memory = "%s"\n  }\n' "$mem"
			echo "}"
			echo
		} >>"$dir/kiln.hcl"
	done
	(cd "$dir" && "$KILN" validate >/dev/null 2>"$dir/validate.err") || die "kiln validate failed for $dir/kiln.hcl: $(cat "$dir/validate.err")"
}

# ---------------------------------------------------------------- kiln
KILN_DIR= KILN_PID=
kiln_start() { # DIR SERVICE...: kiln up, until every service is deployed
	local dir=$1 i
	shift
	KILN_DIR=$dir
	KILN_SVCS+=("$@")
	(cd "$dir" && exec "$KILN" up >"$dir/up.out" 2>"$dir/up.err") &
	KILN_PID=$!
	KILN_ACTIVE="$dir|$KILN_PID|$*"
	for ((i = 0; i < 6000; i++)); do
		grep -q "kiln is serving" "$dir/up.out" "$dir/up.err" 2>/dev/null && break
		kill -0 "$KILN_PID" 2>/dev/null || die "kiln up exited before deploying:
$(tail -n 30 "$dir/up.err")"
		sleep 0.1
	done
	grep -q "kiln is serving" "$dir/up.out" "$dir/up.err" 2>/dev/null || die "kiln up did not deploy within 600s:
$(tail -n 30 "$dir/up.err")"
	KILN_API=$(cat "$dir/.kiln/api.addr")
	local d
	d=$(kstatus | jq -r '.services[0].image' | sed 's/^sha256://')
	[[ -n $d && $d != null ]] && MY_DIGESTS+=("$d")
	return 0
}
kiln_stop() {
	local svc i
	for svc in $(cut -d'|' -f3 <<<"$KILN_ACTIVE"); do
		(cd "$KILN_DIR" && timeout 300 "$KILN" destroy "$svc") >>"$KILN_DIR/destroy.out" 2>&1 ||
			log "warning: kiln destroy $svc failed: $(tail -n 3 "$KILN_DIR/destroy.out")"
	done
	kill -INT "$KILN_PID" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do kill -0 "$KILN_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$KILN_PID" 2>/dev/null; then
		log "warning: kiln up did not stop within 10s of SIGINT; killing it"
		kill -KILL "$KILN_PID" 2>/dev/null || true
	fi
	wait "$KILN_PID" 2>/dev/null || true
	KILN_ACTIVE=
}
kstatus() { "$KILN" -C "$KILN_DIR" status -json; }
# kiln_settled N SERVICE...: every service has N healthy servers, all running and
# in rotation, and says it is healthy.
kiln_settled() {
	local n=$1
	shift
	kstatus 2>/dev/null | jq -e --argjson n "$n" --args '
		[.services[] | select(.name as $s | $ARGS.positional | index($s))] as $sv
		| ($sv | length) == ($ARGS.positional | length)
		  and all($sv[]; .healthy == $n and (.servers | length) == $n
		      and all(.servers[]; .state == "running" and .in_service) and .state == "healthy")' "$@" >/dev/null
}
wait_kiln_settled() { # SECONDS N SERVICE...
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 5; i++)); do
		kiln_settled "$@" && return 0
		sleep 0.2
	done
	return 1
}

# ---------------------------------------------------------------- trials
# One line per trial in trials.tsv: case system run ok recovered_ms file
printf '' >"$WORK/trials.tsv"
kv() { awk -v k="$2" '$1 == k { v = $2; f = 1; exit } END { print f ? v : "-" }' "$1" 2>/dev/null || echo -; }
# trigger KVFILE: what made kiln start a heal after a kill: the container's die
# event (the heal starts within 0.5 s of the kill), failed health checks (it starts
# right after the "unhealthy" event), or else the periodic resync.
trigger() {
	local h u
	h=$(kv "$1" ev_heal_ms) u=$(kv "$1" ev_unhealthy_ms)
	awk -v h="$h" -v u="$u" 'BEGIN {
		if (h == "-") print "-"
		else if (h < 500) print "die event"
		else if (u != "-" && h - u >= 0 && h - u < 100) print "health checks"
		else print "resync" }'
}
record() { # CASE SYSTEM RUN KVFILE RC
	local rec
	rec=$(kv "$4" recovered_ms)
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$([[ $5 == 0 ]] && echo yes || echo no)" "${rec:--}" "$4" >>"$WORK/trials.tsv"
}

# kiln_trial CASE RUN SERVICE ACTION
kiln_trial() {
	local case=$1 run=$2 svc=$3 action=$4 target out=$WORK/trials/kiln-$1-$2.kv rc=0
	wait_kiln_settled 120 "$REPLICAS" "${HEAL_SVCS[@]}" || log "  warning: the kiln services were not all settled before $case run $run"
	sleep "$SPACING"
	target=$(kstatus | jq -r --arg s "$svc" --argjson i $((RANDOM % REPLICAS)) \
		'.services[] | select(.name == $s) | [.servers[] | select(.in_service)] | .[$i % length].id')
	[[ -n $target && $target != null ]] || die "no server of $svc in rotation"
	"$PROBE" heal -system kiln -target "$target" -action "$action" -n "$REPLICAS" -timeout "$TRIAL_TIMEOUT" \
		-api "$KILN_API" -token "$KILN_DIR/.kiln/token" -service "$svc" -door "http://127.0.0.1:${PORTS[$svc]}/" \
		>"$out" 2>"$out.err" || rc=$?
	record "$case" kiln "$run" "$out" "$rc"
	log "  kiln $case run $run (${target:0:12} of $svc): recovered after $(kv "$out" recovered_ms) ms (heal started $(kv "$out" ev_heal_ms)$([[ $case == kill ]] && echo " on $(trigger "$out")"), created $(kv "$out" ev_created_ms), admitted $(kv "$out" ev_admitted_ms), old server destroyed $(kv "$out" ev_target_destroyed_ms)); front door $(kv "$out" door_failed) failed of $(kv "$out" door_sent)$( ((rc == 0)) || echo "; FAILED: $(cat "$out.err")")"
}

START=$(date +%s)
NOISE_BEFORE="$(docker ps -q | wc -l) containers running, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# --- kill and drift with kiln: one service per run, so that no service is healed
# more than twice within a minute (kiln backs a service off after 3 heals in a
# minute, which is meant for crash loops, not for a benchmark's kills).
HEAL_SVCS=()
if ((WANT_KILN_FLEET)); then
	for ((run = 1; run <= RUNS; run++)); do HEAL_SVCS+=("bench-heal-$ID-s$run"); done
	make_app "$WORK/kiln-heal" "$REPLICAS" "" "${HEAL_SVCS[@]}"
	log "kiln: $RUNS services of $REPLICAS servers (health every $INTERVAL): kiln up"
	t=$(date +%s%N)
	kiln_start "$WORK/kiln-heal" "${HEAL_SVCS[@]}"
	wait_kiln_settled 120 "$REPLICAS" "${HEAL_SVCS[@]}" || die "the kiln services did not settle: $(kstatus)"
	log "kiln: deployed in $(( ($(date +%s%N) - t) / 1000000 )) ms"
	if has kill "$CASES" && has kiln "$SYSTEMS"; then
		for ((run = 1; run <= RUNS; run++)); do kiln_trial kill "$run" "${HEAL_SVCS[run - 1]}" kill; done
	fi
	if has drift "$CASES"; then
		for ((run = 1; run <= RUNS; run++)); do kiln_trial drift "$run" "${HEAL_SVCS[run - 1]}" exec; done
	fi
	wait_kiln_settled 60 "$REPLICAS" "${HEAL_SVCS[@]}" || true
	"$KILN" -C "$KILN_DIR" events -json >"$WORK/kiln-heal-events.json" 2>/dev/null || true
	kiln_stop
fi

# --- kill with Swarm
if ((WANT_SWARM)); then
	log "Swarm: baking the same image (kiln bake --load) and adding a health-check binary"
	mkdir -p "$WORK/swarm-img"
	cp -a "$TEMPLATE/." "$WORK/swarm-img"
	out=$(cd "$WORK/swarm-img" && "$KILN" bake --load 2>"$WORK/swarm-img/bake.err") ||
		die "kiln bake --load failed: $(tail -n 20 "$WORK/swarm-img/bake.err")"
	grep -q 'kiln/bench-heal-hello:latest' "$WORK/swarm-img/bake.err" ||
		die "kiln bake --load did not say it loaded kiln/bench-heal-hello:latest: $(cat "$WORK/swarm-img/bake.err")"
	IMG=bench-heal-$ID-hello:v1
	docker tag kiln/bench-heal-hello:latest "$IMG"
	MY_IMAGES+=("$IMG")
	docker rmi kiln/bench-heal-hello:latest >/dev/null 2>&1 || true
	# The image is FROM scratch with no shell: `--health-cmd` (CMD-SHELL) cannot run
	# in it, so a static Go client and an exec-form HEALTHCHECK are added.
	if [[ -z ${DOCKER_BUILDKIT:-} ]]; then
		if docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=1; else export DOCKER_BUILDKIT=0; fi
	fi
	mkdir -p "$WORK/hc"
	cp "$WORK/bin/healthcheck" "$WORK/hc/healthcheck"
	printf 'FROM %s\nCOPY healthcheck /healthcheck\nHEALTHCHECK --interval=%s --timeout=1s --retries=3 CMD ["/healthcheck", "http://127.0.0.1:8080/healthz"]\n' "$IMG" "$INTERVAL" >"$WORK/hc/Dockerfile"
	IMG_HC=bench-heal-$ID-hello-hc:v1
	docker build -q -t "$IMG_HC" "$WORK/hc" >/dev/null 2>"$WORK/hc/build.err" ||
		die "docker build of the health-checked image failed: $(cat "$WORK/hc/build.err")"
	MY_IMAGES+=("$IMG_HC")

	# sw_settled SERVICE: REPLICAS tasks running, every container healthy.
	sw_settled() {
		[[ $(docker service ps "$1" --filter desired-state=running --format '{{.CurrentState}}' | grep -c '^Running') == "$REPLICAS" ]] &&
			[[ $(docker ps -q --filter "label=com.docker.swarm.service.name=$1" --filter health=healthy | wc -l) == "$REPLICAS" ]]
	}
	for sys in $SYSTEMS; do
		[[ $sys == swarm* ]] || continue
		delay=5s
		[[ $sys == swarm-d0 ]] && delay=0s
		svc=bench-heal-$ID-$sys
		log "$sys: docker service create ($REPLICAS replicas, HEALTHCHECK every $INTERVAL, restart delay $delay)"
		SWARM_SVCS+=("$svc")
		# Ports published in host mode (each task its own ephemeral port): the routing
		# mesh needs IPVS, which some kernels lack; and the probe checks each new task
		# directly anyway.
		docker service create --name "$svc" --replicas "$REPLICAS" --publish mode=host,target=8080 \
			--no-resolve-image --health-interval "$INTERVAL" --health-timeout 1s --health-retries 3 \
			--restart-delay "$delay" --detach=false --quiet "$IMG_HC" >"$WORK/$svc.create" 2>&1 ||
			die "docker service create $svc failed: $(tail -n 5 "$WORK/$svc.create")"
		for ((run = 1; run <= RUNS; run++)); do
			for ((i = 0; i < 600; i++)); do sw_settled "$svc" && break; sleep 0.2; done
			sw_settled "$svc" || log "  warning: $svc was not settled before run $run"
			sleep "$SPACING"
			target=$(docker ps -q --no-trunc --filter "label=com.docker.swarm.service.name=$svc" --filter health=healthy | shuf -n 1)
			out=$WORK/trials/$sys-kill-$run.kv rc=0
			"$PROBE" heal -system swarm -target "$target" -action kill -n "$REPLICAS" -timeout "$TRIAL_TIMEOUT" \
				-service "$svc" -health >"$out" 2>"$out.err" || rc=$?
			record kill "$sys" "$run" "$out" "$rc"
			log "  $sys kill run $run (${target:0:12}): recovered after $(kv "$out" recovered_ms) ms (noticed $(kv "$out" detect_ms), new task $(kv "$out" new_task_ms), started $(kv "$out" started_ms), healthy $(kv "$out" healthy_ms), answered $(kv "$out" answer_ms))$( ((rc == 0)) || echo "; FAILED: $(cat "$out.err")")"
		done
		docker service rm "$svc" >/dev/null 2>&1 || true
		wait_gone "com.docker.swarm.service.name=$svc" 60 || log "warning: tasks of $svc still there 60s after docker service rm"
	done
fi

# --- the controller idle with many servers
IDLE_DONE=0
if has idle "$CASES"; then
	svc=bench-heal-$ID-idle
	make_app "$WORK/kiln-idle" "$IDLE_REPLICAS" "$IDLE_MEMORY" "$svc"
	HEAL_SVCS=("$svc")
	log "idle: kiln up with $IDLE_REPLICAS servers (memory $IDLE_MEMORY each, health every $INTERVAL)"
	t=$(date +%s%N)
	kiln_start "$WORK/kiln-idle" "$svc"
	wait_kiln_settled 600 "$IDLE_REPLICAS" "$svc" || die "the $IDLE_REPLICAS servers did not all become healthy: $(kstatus | jq -c '.services[] | {healthy, state}')"
	IDLE_DEPLOY_MS=$(( ($(date +%s%N) - t) / 1000000 ))
	log "idle: $IDLE_REPLICAS servers healthy after $IDLE_DEPLOY_MS ms; settling ${IDLE_SETTLE}s, then sampling ${IDLE_SECONDS}s"
	sleep "$IDLE_SETTLE"
	ev_before=$("$KILN" -C "$KILN_DIR" events -json --service "$svc" | jq -s 'length')
	HZ=$(getconf CLK_TCK)
	DOCKERD_PID=$(pgrep -xo dockerd || true)
	ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime (fields after "(comm)" never hold spaces here)
	rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
	printf '' >"$WORK/idle.tsv" # t_ns kiln_ticks kiln_rss_kib dockerd_ticks
	step=5
	for ((s = 0; s <= IDLE_SECONDS; s += step)); do
		((s == 0)) || sleep "$step"
		printf '%s\t%s\t%s\t%s\n' "$(date +%s%N)" "$(ticks "$KILN_PID")" "$(rss_kib "$KILN_PID")" \
			"$([[ -n $DOCKERD_PID ]] && ticks "$DOCKERD_PID" || echo 0)" >>"$WORK/idle.tsv"
	done
	ev_after=$("$KILN" -C "$KILN_DIR" events -json --service "$svc" | jq -s 'length')
	IDLE_EVENTS=$((ev_after - ev_before))
	tok=$(cat "$KILN_DIR/.kiln/token")
	curl -fsS -H "Authorization: Bearer $tok" "$KILN_API/metrics" >"$WORK/idle-metrics.txt" 2>/dev/null || true
	IDLE_SETTLED=$(kiln_settled "$IDLE_REPLICAS" "$svc" && echo yes || echo no)
	read -r IDLE_CPU IDLE_CPU_MAX IDLE_RSS IDLE_RSS_MAX DOCKERD_CPU < <(awk -F'\t' -v hz="$HZ" '
		NR == 1 { t0 = $1; k0 = $2; d0 = $4 }
		NR > 1 { w = ($2 - pk) / hz / (($1 - pt) / 1e9) * 100; if (w > wmax) wmax = w }
		{ pt = $1; pk = $2; if ($3 > rmax) rmax = $3; r = $3; t = $1; k = $2; d = $4 }
		END { el = (t - t0) / 1e9; printf "%.2f %.2f %.1f %.1f %.2f\n", (k - k0) / hz / el * 100, wmax, r / 1024, rmax / 1024, (d - d0) / hz / el * 100 }' "$WORK/idle.tsv")
	metric() { awk -v m="$1" '$1 == m { printf "%s", $2; exit }' "$WORK/idle-metrics.txt"; }
	IDLE_GOROUTINES=$(metric go_goroutines)
	IDLE_HEAP=$(awk -v v="$(metric go_memstats_heap_inuse_bytes)" 'BEGIN { if (v != "") printf "%.1f", v / 1048576 }')
	IDLE_DONE=1
	log "idle: kiln $IDLE_CPU% of one core (max 5s window $IDLE_CPU_MAX%), RSS $IDLE_RSS MiB (max $IDLE_RSS_MAX); dockerd $DOCKERD_CPU%; $IDLE_EVENTS events meanwhile"
	log "idle: kiln destroy ($IDLE_REPLICAS servers)"
	t=$(date +%s%N)
	kiln_stop
	IDLE_DESTROY_MS=$(( ($(date +%s%N) - t) / 1000000 ))
fi
ELAPSED=$(($(date +%s) - START))
NOISE_AFTER="$(docker ps -q | wc -l) containers running, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
# col CASE SYSTEM KEY: the values of KEY over the trials of CASE and SYSTEM that
# recovered, one per line.
col() {
	local f
	awk -F'\t' -v c="$1" -v s="$2" '$1 == c && $2 == s && $4 == "yes" { print $6 }' "$WORK/trials.tsv" |
		while read -r f; do kv "$f" "$3"; done | grep -v '^-$' || true
}
# colsub CASE SYSTEM KEY_A KEY_B: KEY_A - KEY_B per trial
colsub() {
	local f a b
	awk -F'\t' -v c="$1" -v s="$2" '$1 == c && $2 == s && $4 == "yes" { print $6 }' "$WORK/trials.tsv" |
		while read -r f; do
			a=$(kv "$f" "$3") b=$(kv "$f" "$4")
			[[ -n $a && -n $b && $a != - && $b != - ]] && awk -v a="$a" -v b="$b" 'BEGIN { print a - b }'
		done || true
}
# stats: "median min max count" of numbers on stdin (ms in, seconds out)
stats() {
	sort -g | awk '{ v[++k] = $1 } END {
		if (k == 0) { print "- - - 0"; exit }
		m = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
		printf "%.3f %.3f %.3f %d\n", m / 1000, v[1] / 1000, v[k] / 1000, k }'
}
med() { stats | awk '{ print $1 }'; }
fmt_s() { awk -v m="$1" -v lo="$2" -v hi="$3" 'BEGIN { if (m == "-") { print "–"; exit } printf "%.2f s (%.2f–%.2f)", m, lo, hi }'; }
fmt_m() { awk -v m="$1" 'BEGIN { if (m == "-" || m == "") print "–"; else printf "%.2f", m }'; }
okcount() { awk -F'\t' -v c="$1" -v s="$2" '$1 == c && $2 == s { t++; if ($4 == "yes") k++ } END { printf "%d/%d", k, t }' "$WORK/trials.tsv"; }
sumkey() { col "$1" "$2" "$3" | awk '{ s += $1 } END { print s + 0 }'; }
title() {
	case $1 in
	kiln) echo "kiln (health every $INTERVAL, unhealthy_threshold 3)" ;;
	swarm) echo "Swarm (HEALTHCHECK every $INTERVAL, default restart delay 5s)" ;;
	swarm-d0) echo "Swarm (HEALTHCHECK every $INTERVAL, --restart-delay 0s)" ;;
	esac
}

report() {
	local sys m lo hi k kmed
	echo "# Healing: kiln vs Docker Swarm ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	if has kill "$CASES"; then
		echo "## (a) A killed server: time to a healthy replacement serving"
		echo
		echo "\`docker kill\` (SIGKILL through the Docker API) of one of $REPLICAS servers, until the fleet is whole again; median (min–max) of $RUNS kills per system."
		echo
		echo "| system | recovered after | × Swarm (default) | × Swarm (restart delay 0s) | kills recovered |"
		echo "| --- | ---: | ---: | ---: | ---: |"
		read -r KM _ _ _ < <(col kill kiln recovered_ms | stats)
		read -r SM _ _ _ < <(col kill swarm recovered_ms | stats)
		read -r S0 _ _ _ < <(col kill swarm-d0 recovered_ms | stats)
		for sys in $SYSTEMS; do
			read -r m lo hi k < <(col kill "$sys" recovered_ms | stats)
			local r1=– r0=–
			if [[ $sys == kiln ]]; then
				r1=$(awk -v a="$m" -v b="$SM" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "–"; else printf "%.2f×", a / b }')
				r0=$(awk -v a="$m" -v b="$S0" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "–"; else printf "%.2f×", a / b }')
			fi
			printf '| %s | %s | %s | %s | %s |\n' "$(title "$sys")" "$(fmt_s "$m" "$lo" "$hi")" "$r1" "$r0" "$(okcount kill "$sys")"
		done
		echo
		echo "- *recovered*, kiln: \`GET /v1/status\` shows $REPLICAS healthy servers, all running and in rotation, the killed one no longer listed, **and** the front door (requested continuously, ~150/s) has answered from the new server. Swarm: $REPLICAS tasks running (what \`docker service ps\` shows), none of them the killed container, the new task's container \`healthy\` and answering \`GET /\` on its own published port (host mode: Swarm's routing mesh needs IPVS, which this kernel lacks). Both polled every 20 ms by bench/probe."
		echo "- the clock starts just before the kill call; the call itself (until the engine confirms the kill) is included."
		echo
		if has kiln "$SYSTEMS"; then
			echo "Where kiln's time goes (medians, seconds after the kill; from kiln's events):"
			echo
			echo "| kill call returned | killed server listed as gone | heal started | replacement created (running) | replacement admitted | front door answered from it | recovered |"
			echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
			printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$(col kill kiln action_ms | med)" "$(col kill kiln gone_ms | med)" "$(col kill kiln ev_heal_ms | med)" \
				"$(col kill kiln ev_created_ms | med)" "$(col kill kiln ev_admitted_ms | med)" "$(col kill kiln door_new_ms | med)" "$(col kill kiln recovered_ms | med)"
			echo
			echo "Heal started = kiln's \`heal\` event. Before it: detection (the controller can react to the container's \`die\` event, to 3 failed health checks in a row, one every $INTERVAL, or to its 5 s resync, whichever comes first); after it, \`create\` (and start) of a new container, then the health gate. What started kiln's heals: $(for f in $(awk -F'\t' '$1 == "kill" && $2 == "kiln" { print $6 }' "$WORK/trials.tsv"); do trigger "$f"; done | sort | uniq -c | awk '{ n = $1; $1 = ""; printf "%s%s:%s", (k++ ? ", " : ""), n, $0 }' | sed 's/:  */ × /g'). Front door during kiln's heals: $(sumkey kill kiln door_failed) failed requests of $(sumkey kill kiln door_sent) (the first failure, if any, $(col kill kiln door_first_failure_ms | med) s after the kill)."
			echo
		fi
		local sw header=0
		for sw in swarm swarm-d0; do
			has "$sw" "$SYSTEMS" || continue
			if ((!header)); then
				header=1
				echo "Where Swarm's time goes (medians, seconds after the kill):"
				echo
				echo "| system | kill call returned | task seen failed | new task | its container started | healthy | $REPLICAS tasks running | new container answered | recovered |"
				echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
			fi
			printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$sw" "$(col kill $sw action_ms | med)" "$(col kill $sw detect_ms | med)" "$(col kill $sw new_task_ms | med)" \
				"$(col kill $sw started_ms | med)" "$(col kill $sw healthy_ms | med)" "$(col kill $sw tasks_ms | med)" "$(col kill $sw answer_ms | med)" "$(col kill $sw recovered_ms | med)"
		done
		((!header)) || echo
	fi
	if has drift "$CASES"; then
		echo "## (b) An unauthorized change: \`docker exec\` into a server, until it is replaced"
		echo
		echo "\`docker exec <server> /app/hello\` (through the Docker API; the root filesystem is read-only, so the exec itself is the change), until the exec'd container is gone and $REPLICAS healthy servers serve (same criteria as (a)); median (min–max) of $RUNS. Swarm does not watch for drift, so kiln only."
		echo
		read -r m lo hi k < <(col drift kiln recovered_ms | stats)
		echo "| system | replaced after | drift event | heal started | replacement created | admitted | old server destroyed | front door failed / sent | runs |"
		echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
		printf '| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |\n' "$(title kiln)" "$(fmt_s "$m" "$lo" "$hi")" "$(col drift kiln ev_drift_ms | med)" "$(col drift kiln ev_heal_ms | med)" \
			"$(col drift kiln ev_created_ms | med)" "$(col drift kiln ev_admitted_ms | med)" "$(col drift kiln ev_target_destroyed_ms | med)" \
			"$(sumkey drift kiln door_failed)" "$(sumkey drift kiln door_sent)" "$(okcount drift kiln)"
		echo
		echo "Columns after the first: medians, seconds after the exec, from kiln's events."
		echo
	fi
	if ((IDLE_DONE)); then
		echo "## (c) The controller idle with $IDLE_REPLICAS servers"
		echo
		echo "One service of $IDLE_REPLICAS servers (\`resources { memory = \"$IDLE_MEMORY\" }\`, health check every $INTERVAL), all healthy, nothing happening; the \`kiln up\` process sampled from \`/proc/PID/stat\` (utime + stime) and \`/proc/PID/status\` (VmRSS) every 5 s for ${IDLE_SECONDS} s, ${IDLE_SETTLE} s after the last server became healthy."
		echo
		echo "| kiln CPU (% of one core) | busiest 5 s window | RSS at the end | RSS max | Go heap in use | goroutines | dockerd CPU meanwhile | events meanwhile |"
		echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
		printf '| %s %% | %s %% | %s MiB | %s MiB | %s MiB | %s | %s %% | %s |\n' "$IDLE_CPU" "$IDLE_CPU_MAX" "$IDLE_RSS" "$IDLE_RSS_MAX" "${IDLE_HEAP:-–}" "${IDLE_GOROUTINES:-–}" "$DOCKERD_CPU" "$IDLE_EVENTS"
		echo
		echo "- what the controller does meanwhile: a health probe of every server every $INTERVAL ($IDLE_REPLICAS probes per interval), and every 5 s a resync that lists the containers and compares every server with its spec (inspect and filesystem changes through the Docker API): the dockerd column is the engine's side of that (and of anything else running on the machine)."
		echo "- deploying the $IDLE_REPLICAS servers took $(awk -v m="$IDLE_DEPLOY_MS" 'BEGIN { printf "%.1f", m / 1000 }') s (\`kiln up\` to all healthy); \`kiln destroy\` and stop, $(awk -v m="$IDLE_DESTROY_MS" 'BEGIN { printf "%.1f", m / 1000 }') s. The fleet was $([[ $IDLE_SETTLED == yes ]] && echo "still all healthy" || echo "**not** all healthy") at the end of the window."
		echo
	fi
	echo "## Goals"
	echo
	echo "| goal | result | met |"
	echo "| --- | --- | :---: |"
	if has kill "$CASES" && has kiln "$SYSTEMS"; then
		for sw in swarm swarm-d0; do
			has "$sw" "$SYSTEMS" || continue
			local sm
			read -r sm _ _ _ < <(col kill "$sw" recovered_ms | stats)
			awk -v a="$KM" -v b="$sm" -v t="$(title "$sw")" 'BEGIN {
				if (a == "-" || b == "-" || b == 0) { printf "| kiln recovery ≤ 0.25× %s | – | ? |\n", t; exit }
				r = a / b; printf "| kiln recovery ≤ 0.25× %s | %.2f s / %.2f s = %.2f× | %s |\n", t, a, b, r, (r <= 0.25) ? "yes" : "**no**" }'
		done
		awk -v a="$KM" 'BEGIN { if (a == "-") print "| kiln recovery < 2 s | – | ? |"; else printf "| kiln recovery < 2 s | %.2f s (median) | %s |\n", a, (a < 2) ? "yes" : "**no**" }'
	fi
	if has drift "$CASES"; then
		local dm start
		read -r dm _ _ _ < <(col drift kiln recovered_ms | stats)
		start=$(colsub drift kiln ev_admitted_ms ev_heal_ms | med)
		awk -v a="$dm" -v s="$start" 'BEGIN {
			if (a == "-" || s == "-") { print "| drift replaced within one resync (5 s) + a server start | – | ? |"; exit }
			printf "| drift replaced within one resync (5 s) + a server start (%.2f s: heal → admitted, median) | %.2f s (median) | %s |\n", s, a, (a <= 5 + s) ? "yes" : "**no**" }'
	fi
	if ((IDLE_DONE)); then
		awk -v c="$IDLE_CPU" -v n="$IDLE_REPLICAS" 'BEGIN { printf "| idle CPU < 2%% with %d servers | %.2f%% of one core | %s |\n", n, c, (c < 2) ? "yes" : "**no**" }'
	fi
	echo
	echo "## Every trial"
	echo
	echo "| case | system | run | recovered | detail (ms after the action) |"
	echo "| --- | --- | ---: | ---: | --- |"
	local c s r ok rec f detail
	while IFS=$'\t' read -r c s r ok rec f; do
		if [[ $s == kiln ]]; then
			detail="heal $(kv "$f" ev_heal_ms)$([[ $c == kill ]] && echo " (on $(trigger "$f"))"), created $(kv "$f" ev_created_ms), admitted $(kv "$f" ev_admitted_ms), old destroyed $(kv "$f" ev_target_destroyed_ms), unhealthy event $(kv "$f" ev_unhealthy_ms), degraded $(kv "$f" ev_degraded_ms); door $(kv "$f" door_failed)/$(kv "$f" door_sent) failed"
		else
			detail="task failed $(kv "$f" detect_ms), new task $(kv "$f" new_task_ms), started $(kv "$f" started_ms), healthy $(kv "$f" healthy_ms), all running $(kv "$f" tasks_ms), answered $(kv "$f" answer_ms)"
		fi
		printf '| %s | %s | %s | %s | %s |\n' "$c" "$s" "$r" "$([[ $ok == yes ]] && awk -v v="$rec" 'BEGIN { printf "%.2f s", v / 1000 }' || echo "**not recovered**")" "$detail"
	done <"$WORK/trials.tsv"
	echo
	echo "## Setup"
	echo
	echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); $(go version | awk '{print $3}')"
	echo "- Docker: engine $(docker version -f '{{.Server.Version}}' 2>/dev/null), storage driver $(docker info -f '{{.Driver}}' 2>/dev/null)"
	echo "- other load on the machine: before the run $NOISE_BEFORE; after it $NOISE_AFTER."
	echo "- kiln: built from $KILN_FROM; the example (examples/hello) with its image renamed bench-heal-hello; kill and drift: $RUNS services of $REPLICAS servers each in one \`kiln up\`, health \`interval = \"$INTERVAL\"\`, other settings the example's (unhealthy_threshold 3, drift action replace); run i kills a server of service i, then later execs into a server of service i (so no service is healed 3 times within a minute, which would make kiln back it off as crash-looping)."
	if ((WANT_SWARM)); then
		echo "- Swarm: single node; the same kiln-baked image (\`kiln bake --load\`) plus a static Go health-check binary (bench/loadgen/healthcheck) and \`HEALTHCHECK --interval=$INTERVAL --timeout=1s --retries=3 CMD [\"/healthcheck\", ...]\` (exec form: the image has no shell for \`--health-cmd\`); \`docker service create --replicas $REPLICAS --publish mode=host,target=8080 --health-interval $INTERVAL --restart-delay 5s|0s\`."
	fi
	echo "- wall time of the measurements: ${ELAPSED} s"
}

mkdir -p "$(dirname "$RESULTS_FILE")"
report | tee "$RESULTS_FILE"
log "results written to $RESULTS_FILE"
