#!/usr/bin/env bash
# bench/pipeline.sh - "continuous delivery": the time from `git commit` to the
# new version answering at the front door, for the example app, stage by stage,
# and how much of it is kiln's own overhead.
#
# See bench/README.md for what is measured and how. Quick start:
#
#     bench/pipeline.sh                        # full run (RUNS=5), ~3 min on 2 cores
#     bench/pipeline.sh -v "fast-hook"         # only some variants
#     bench/pipeline.sh -h                     # all options
#
# The results table goes to stdout and to bench/results/pipeline-<date>.md;
# progress goes to stderr.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

# ---------------------------------------------------------------- settings
RUNS=${RUNS:-5}
VARIANTS=${VARIANTS:-"example-poll example-hook fast-hook fast-code"}
TRIGGER=${TRIGGER:-webhook}        # how the *-hook and fast-* variants announce a commit: webhook | cli
RUN_TIMEOUT=${RUN_TIMEOUT:-180}    # seconds for one run to reach the front door and finish
PORT_BASE=${PORT_BASE:-18800}
EXAMPLE_DIR=${EXAMPLE_DIR:-$REPO_DIR/examples/hello}
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results}
RESULTS_FILE=${RESULTS_FILE:-$RESULTS_DIR/pipeline-$(date +%Y-%m-%d-%H%M).md}
KILN_BIN=${KILN_BIN:-}
KILN_REF=${KILN_REF:-}             # build kiln from this commit instead of the work tree
KEEP_WORK=${KEEP_WORK:-0}
ALL_VARIANTS="example-poll example-hook fast-hook fast-code"

usage() {
	cat <<EOF
usage: bench/pipeline.sh [-n RUNS] [-v "$ALL_VARIANTS"] [-k] [-h]

  -n RUNS      measured commits per variant (default $RUNS; at least 5 for
               numbers worth quoting)
  -v VARIANTS  what to measure (default "$VARIANTS")
                 example-poll  the example's service (2 replicas, health every 500ms,
                               rolling, min_healthy 1s); the pipeline polls every 1s
                 example-hook  the same, the pipeline does not poll: a signed webhook
                               announces each commit right after it is made
                 fast-hook     latency-minded: 1 replica, min_healthy 0s; webhook
                 fast-code     as fast-hook, and each commit also changes a line of
                               main.go, so the bake runs a real go build
  -k           keep the temporary work directory (for debugging)
  -h           this help

Each measured commit changes the greeting (the content of the image's
/etc/hello/greeting.txt in kiln.hcl), which the service answers with.

Environment: RUNS, VARIANTS, TRIGGER (webhook | cli: \`kiln pipeline trigger\`; default
$TRIGGER), RUN_TIMEOUT ($RUN_TIMEOUT s), PORT_BASE ($PORT_BASE),
EXAMPLE_DIR, KILN_BIN (use this kiln binary), KILN_REF (build kiln from that commit,
e.g. HEAD, via git archive), KEEP_WORK=1, RESULTS_FILE.
EOF
}

while getopts ":n:v:kh" opt; do
	case $opt in
	n) RUNS=$OPTARG ;;
	v) VARIANTS=$OPTARG ;;
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
for v in $VARIANTS; do has "$v" "$ALL_VARIANTS" || die "unknown variant '$v' ($ALL_VARIANTS)"; done
has "$TRIGGER" "webhook cli" || die "TRIGGER must be webhook or cli (got '$TRIGGER')"

# ---------------------------------------------------------------- preflight
for c in go git jq curl awk sed openssl; do command -v $c >/dev/null || die "$c is not on PATH"; done
command -v docker >/dev/null || die "the docker CLI is not installed"
if ! docker_err=$(docker info 2>&1 >/dev/null); then
	die "the Docker daemon is not reachable ('docker info' failed):
$docker_err
Start it (e.g. 'service docker start', or scripts/ensure-docker) and run again."
fi
others=$(pgrep -af 'bench/(rollout|bake|heal)\.sh' | grep -v "^$$ " || true)
[[ -z $others ]] || log "warning: other benchmarks are running; the numbers will be noisier:
$others"

# ---------------------------------------------------------------- work dir and cleanup
ID=p$$ # in the name of everything this run creates
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-pipeline.XXXXXX")
mkdir -p "$WORK/bin" "$WORK/runs"
declare -a KILN_SVCS=() MY_DIGESTS=()
KILN_ACTIVE= # DIR|PID|SERVICE of the running kiln up, if any
EV_PID= DOOR_PID=
PRE_KILN_IMGS=$(docker image ls --format '{{.Repository}}:{{.Tag}}' 'kiln/img' 2>/dev/null | sort -u || true)

cleanup() {
	local rc=$? dir pid svc
	trap - INT TERM
	set +e
	[[ -z $EV_PID ]] || { kill "$EV_PID" 2>/dev/null; wait "$EV_PID" 2>/dev/null; }
	[[ -z $DOOR_PID ]] || { kill "$DOOR_PID" 2>/dev/null; wait "$DOOR_PID" 2>/dev/null; }
	if [[ -n $KILN_ACTIVE ]]; then
		IFS='|' read -r dir pid svc <<<"$KILN_ACTIVE"
		if kill -0 "$pid" 2>/dev/null; then
			timeout 120 "$KILN" -C "$dir" destroy "$svc" >/dev/null 2>&1
			kill -INT "$pid" 2>/dev/null
			for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
			kill -KILL "$pid" 2>/dev/null
		fi
	fi
	# Whatever a dead daemon left (servers and pipeline candidates), by label.
	for svc in "${KILN_SVCS[@]}"; do
		docker ps -aq --filter "label=dev.kiln.service=$svc" | xargs -r docker rm -f >/dev/null 2>&1
		docker ps -aq --filter "label=dev.kiln.service=$svc-candidate" | xargs -r docker rm -f >/dev/null 2>&1
	done
	# kiln loads the images it runs as kiln/img:<digest>: remove those this run
	# made, if they were not there before and nothing uses them.
	for d in "${MY_DIGESTS[@]}"; do
		grep -qx "kiln/img:$d" <<<"$PRE_KILN_IMGS" || docker rmi "kiln/img:$d" >/dev/null 2>&1
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
PROBE=$WORK/bin/probe

# Commits need an author; the benchmark's own, whatever git is configured with.
export GIT_AUTHOR_NAME=kiln-bench GIT_AUTHOR_EMAIL=bench@kiln.invalid
export GIT_COMMITTER_NAME=kiln-bench GIT_COMMITTER_EMAIL=bench@kiln.invalid
export GIT_CONFIG_NOSYSTEM=1

# ---------------------------------------------------------------- the example
[[ -f $EXAMPLE_DIR/kiln.hcl ]] || die "$EXAMPLE_DIR/kiln.hcl not found"
TEMPLATE=$WORK/app
cp -a "$EXAMPLE_DIR/." "$TEMPLATE"
rm -rf "$TEMPLATE/.kiln"
f=$TEMPLATE/kiln.hcl
for want in '^service "hello" {' '^ *replicas *=' '^ *listen *= var\.listen$' '^ *min_healthy *=' '^variable "listen"'; do
	grep -q -- "$want" "$f" || die "could not set up the example: no line of $EXAMPLE_DIR/kiln.hcl matches /$want/; has it changed shape? (it needs a service \"hello\" with replicas, listen = var.listen and an update block with min_healthy)"
done
[[ $(grep -c '^ *content *= *"' "$f") == 1 ]] ||
	die "$EXAMPLE_DIR/kiln.hcl should have exactly one 'content = \"...\"' line (the greeting file); the benchmark changes it in every commit"
grep -q '^ *content *= *"Hello' "$f" || die "the example's greeting (content = ...) does not start with Hello: the pipeline's check looks for it"
# fast-code rewrites one line of main.go in every commit: a marker kept in the
# binary (an init reads it), so that the change reaches the compiled package.
cat >>"$TEMPLATE/main.go" <<'EOF'

// Appended by bench/pipeline.sh; its fast-code variant rewrites the next line.
var benchMarker = "kiln-bench-0"

var benchSink string

func init() { benchSink = benchMarker }
EOF

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

SECRET=bench-$ID-$RANDOM$RANDOM
PIPE=bench

# make_repo DIR SERVICE VARIANT: a git repository with the example, its service
# renamed, the variant's settings, a pipeline block, and one commit.
make_repo() {
	local dir=$1 svc=$2 v=$3 poll=0s
	mkdir -p "$dir"
	cp -a "$TEMPLATE/." "$dir"
	sed -i "s/^service \"hello\" {/service \"$svc\" {/" "$dir/kiln.hcl"
	case $v in
	fast-*) sed -i -e 's/^\( *replicas *=\).*/\1 1/' -e 's/^\( *min_healthy *=\).*/\1 "0s"/' "$dir/kiln.hcl" ;;
	esac
	[[ $v == example-poll ]] && poll=1s
	cat >>"$dir/kiln.hcl" <<EOF

pipeline "$PIPE" {
  repo           = "."
  branch         = "main"
  poll           = "$poll"
  services       = ["$svc"]
  webhook_secret = "$SECRET"

  check "greets" {
    path = "/"
    body = "Hello"
  }
}
EOF
	printf '.kiln/\n' >"$dir/.gitignore"
	(cd "$dir" && "$KILN" validate >/dev/null 2>"$dir/../validate.err") || die "kiln validate failed for $dir/kiln.hcl: $(cat "$dir/../validate.err")"
	(cd "$dir" && git init -q -b main && git add -A && git commit -qm "bench: the example") || die "git init/commit failed in $dir"
}

# ---------------------------------------------------------------- kiln
KILN_DIR= KILN_PID= API= TOKEN=
kiln_start() { # DIR SERVICE
	local dir=$1 svc=$2 i
	KILN_DIR=$dir
	KILN_SVCS+=("$svc")
	(cd "$dir" && PATH=$WORK/gowrap:$PATH exec "$KILN" up >"$dir/../up.out" 2>"$dir/../up.err") &
	KILN_PID=$!
	KILN_ACTIVE="$dir|$KILN_PID|$svc"
	for ((i = 0; i < 3000; i++)); do
		grep -q "kiln is serving" "$dir/../up.out" "$dir/../up.err" 2>/dev/null && break
		kill -0 "$KILN_PID" 2>/dev/null || die "kiln up exited before deploying:
$(tail -n 30 "$dir/../up.err")"
		sleep 0.1
	done
	grep -q "kiln is serving" "$dir/../up.out" "$dir/../up.err" 2>/dev/null || die "kiln up did not deploy within 300s:
$(tail -n 30 "$dir/../up.err")"
	API=$(cat "$dir/.kiln/api.addr")
	TOKEN=$(cat "$dir/.kiln/token")
	PROJECT=$(cat "$dir/.kiln/project")
}
kiln_stop() {
	local i svc
	svc=$(cut -d'|' -f3 <<<"$KILN_ACTIVE")
	(cd "$KILN_DIR" && timeout 120 "$KILN" destroy "$svc") >>"$KILN_DIR/../destroy.out" 2>&1 ||
		log "warning: kiln destroy $svc failed: $(tail -n 3 "$KILN_DIR/../destroy.out")"
	kill -INT "$KILN_PID" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do kill -0 "$KILN_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$KILN_PID" 2>/dev/null; then
		log "warning: kiln up did not stop within 10s of SIGINT; killing it"
		kill -KILL "$KILN_PID" 2>/dev/null || true
	fi
	wait "$KILN_PID" 2>/dev/null || true
	KILN_ACTIVE=
}
api() { curl -fsS -H "Authorization: Bearer $TOKEN" "$API$1"; }
# runs_idle: no run of the pipeline is queued or running.
runs_idle() { api "/v1/runs?pipeline=$PIPE" | jq -e 'all(.[]; .state != "queued" and .state != "running")' >/dev/null; }
last_event_id() { api "/v1/events?since=$1" | jq 'if length > 0 then .[-1].id else null end'; }
max_event_id() {
	local id=0 next
	while next=$(last_event_id "$id") && [[ $next != null ]]; do id=$next; done
	echo "$id"
}

# ---------------------------------------------------------------- go, timed
# kiln runs `go` from PATH (go env, go build): the daemon gets a wrapper first in
# its PATH that logs when each call starts and ends, so that each run's go build
# time is known (the pipeline's bake log has no step durations).
REAL_GO=$(command -v go)
GO_LOG=$WORK/go-calls.log
mkdir -p "$WORK/gowrap"
cat >"$WORK/gowrap/go" <<EOF
#!/usr/bin/env bash
s=\$(date +%s%N)
$(printf '%q' "$REAL_GO") "\$@"
rc=\$?
printf '%s %s %s %s\\n' "\$s" "\$(date +%s%N)" "\$rc" "\$*" >>$(printf '%q' "$GO_LOG")
exit \$rc
EOF
chmod +x "$WORK/gowrap/go"
: >"$GO_LOG"

# ---------------------------------------------------------------- one measured commit
# Per run, one line of key=value pairs (ms after the commit) in runs.tsv.
printf '' >"$WORK/runs.tsv"

# measure VARIANT RUN SERVICE DIR PORT
measure() {
	local v=$1 run=$2 svc=$3 dir=$4 port=$5 base=$WORK/runs/$1-$2 greeting t0 sha lastev rc=0 i state=
	greeting="Hello from bench run $run of $v ($ID-$RANDOM$RANDOM)"
	sed -i "s|^\( *content *= *\)\".*\"\$|\1\"$greeting\\\\n\"|" "$dir/kiln.hcl"
	grep -qF "$greeting" "$dir/kiln.hcl" || die "could not change the greeting in $dir/kiln.hcl"
	[[ $v == fast-code ]] && sed -i "s/^var benchMarker = .*/var benchMarker = \"kiln-bench-$run-$ID-$RANDOM\"/" "$dir/main.go"
	lastev=$(max_event_id)
	t0=$(date +%s%N)
	# Docker's view: every container of the project (servers and candidates).
	docker events --since "$(awk -v t="$t0" 'BEGIN { printf "%.3f", t / 1e9 - 1 }')" --filter type=container --filter "label=dev.kiln.project=$PROJECT" \
		--format '{{.TimeNano}}|{{.Action}}|{{index .Actor.Attributes "name"}}|{{index .Actor.Attributes "dev.kiln.service"}}' >"$base.docker" 2>"$base.docker.err" &
	EV_PID=$!
	"$PROBE" door -url "http://127.0.0.1:$port/" -want "$greeting" -timeout "${RUN_TIMEOUT}s" >"$base.door" 2>"$base.door.err" &
	DOOR_PID=$!
	sleep 0.2 # the poller is up before the commit; it reports absolute times anyway
	# ---- the commit (the clock starts here)
	t0=$(date +%s%N)
	(cd "$dir" && git commit -qam "bench: run $run of $v") || die "git commit failed in $dir"
	local t_git=$(date +%s%N)
	sha=$(cd "$dir" && git rev-parse HEAD)
	case $v in
	example-poll) ;;
	*)
		if [[ $TRIGGER == webhook ]]; then
			local body sig
			body=$(printf '{"ref": "refs/heads/main", "after": "%s"}' "$sha")
			sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$SECRET" | awk '{ print $NF }')
			curl -fsS -X POST -H "Content-Type: application/json" -H "X-Hub-Signature-256: sha256=$sig" \
				--data "$body" "$API/v1/pipelines/$PIPE/webhook" >"$base.hook" 2>&1 || { rc=1; log "  webhook call failed: $(cat "$base.hook")"; }
		else
			"$KILN" -C "$dir" pipeline trigger "$PIPE" --commit "$sha" >"$base.hook" 2>&1 || { rc=1; log "  kiln pipeline trigger failed: $(cat "$base.hook")"; }
		fi
		;;
	esac
	local t_hook=$(date +%s%N)
	wait "$DOOR_PID" || rc=$?
	DOOR_PID=
	# ---- until the run is over (the rollout continues after the first new answer)
	for ((i = 0; i < RUN_TIMEOUT * 5; i++)); do
		state=$(api "/v1/runs?pipeline=$PIPE" | jq -r --arg c "$sha" '[.[] | select(.commit == $c)][0].state // "none"')
		[[ $state == succeeded || $state == failed || $state == superseded || $state == interrupted ]] && break
		sleep 0.2
	done
	local t_over=$(date +%s%N)
	sleep 1
	kill "$EV_PID" 2>/dev/null || true
	wait "$EV_PID" 2>/dev/null || true
	EV_PID=
	local id
	id=$(api "/v1/runs?pipeline=$PIPE" | jq -r --arg c "$sha" '[.[] | select(.commit == $c)][0].id // empty')
	[[ -n $id ]] && api "/v1/runs/$id" >"$base.run.json" || echo '{}' >"$base.run.json"
	[[ -n $id ]] && "$KILN" -C "$dir" pipeline show "$id" >"$base.show" 2>&1 || true
	api "/v1/events?service=$svc&since=$lastev" >"$base.events.json" || echo '[]' >"$base.events.json"
	[[ $state == succeeded ]] || rc=1
	# ---- the numbers, in ms after the commit
	local t0s
	t0s=$(awk -v t="$t0" 'BEGIN { printf "%.6f", t / 1e9 }')
	{
		printf 'variant=%s run=%s ok=%s state=%s id=%s ' "$v" "$run" "$([[ $rc == 0 ]] && echo yes || echo no)" "$state" "${id:--}"
		printf 'hook=%s over=%s ' "$(awk -v a="$t_hook" -v b="$t0" 'BEGIN { printf "%.1f", (a - b) / 1e6 }')" "$(awk -v a="$t_over" -v b="$t0" 'BEGIN { printf "%.1f", (a - b) / 1e6 }')"
		printf 'git=%s ' "$(awk -v a="$t_git" -v b="$t0" 'BEGIN { printf "%.1f", (a - b) / 1e6 }')"
		# kiln's own timings of the engine's work: the image load and the candidate's
		# create+start (test stage log), the new server's create+start (its event).
		jq -j 'def ms: if . == null then "-" else capture("(?<n>[0-9.]+)(?<u>ms|s)") | (.n | tonumber) * (if .u == "s" then 1000 else 1 end) | tostring end;
			([.stages[]? | select(.name == "test") | .log] | first // "") as $l
			| "load=\($l | [scan("ready in the engine \\(([0-9.]+m?s)\\)")[0]] | first | ms) cand_api=\($l | [scan("candidate [^ ]+ started \\(([0-9.]+m?s)\\)")[0]] | first | ms) "' "$base.run.json"
		jq -j 'def ms: if . == null then "-" else capture("(?<n>[0-9.]+)(?<u>ms|s)") | (.n | tonumber) * (if .u == "s" then 1000 else 1 end) | tostring end;
			"srv_api=\([.[] | select(.type == "created") | .message | scan(" in ([0-9.]+m?s)$")[0]] | first | ms) "' "$base.events.json"
		awk -v t0="$t0" '$1 == "first_ns" && $2 != "-" { printf "first=%.1f ", ($2 - t0) / 1e6 }' "$base.door"
		jq -j --argjson t0 "$t0s" '
			def s: if . == null or . == "" then null else capture("^(?<s>[^.Z]+)(?<f>\\.[0-9]+)?Z$") | ((.s + "Z") | fromdate) + ((.f // ".0") | "0" + . | tonumber) end;
			def rel: s | if . == null then "-" else ((. - $t0) * 1000 * 10 | round / 10 | tostring) end;
			"queued=\(.created | rel) started=\(.started | rel) finished=\(.finished | rel) "
			+ ([.stages[]? | "\(.name)_start=\(.started | rel) \(.name)_end=\(.finished | rel) "] | join(""))' "$base.run.json"
		jq -j --argjson t0 "$t0s" '
			def s: capture("^(?<s>[^.Z]+)(?<f>\\.[0-9]+)?Z$") | ((.s + "Z") | fromdate) + ((.f // ".0") | "0" + . | tonumber);
			([.[] | select(.type == "admitted")][0].time) as $a
			| "admitted=\(if $a == null then "-" else (($a | s) - $t0) * 1000 * 10 | round / 10 | tostring end) "' "$base.events.json"
		# go: the calls the daemon made during the run (started after the commit).
		awk -v t0="$t0" -v t1="$t_over" '$1 >= t0 && $1 <= t1 { ms = ($2 - $1) / 1e6; if ($4 == "build") { b += ms; nb++ } else { o += ms; no++ } }
			END { printf "gobuild=%.1f gobuilds=%d goother=%.1f ", b, nb, o }' "$GO_LOG"
		# Docker: the candidate (service SVC-candidate) and the first new server.
		awk -F'|' -v t0="$t0" -v cand="$svc-candidate" -v svc="$svc" '
			function r(t) { return sprintf("%.1f", (t - t0) / 1e6) }
			$1 < t0 { next }
			$4 == cand && $2 == "create" && !cc { cc = $1 }
			$4 == cand && $2 == "start" && !cs { cs = $1 }
			$4 == cand && $2 ~ /^kill/ && !ck { ck = $1 }
			$4 == cand && $2 == "destroy" && !cd { cd = $1 }
			$4 == svc && $2 == "create" && !sc { sc = $1; sname = $3 }
			$4 == svc && $2 == "start" && $3 == sname && !ss { ss = $1 }
			$4 == svc && $2 ~ /^kill/ && $3 != sname && !ok { ok = $1 }
			END {
				printf "cand_create=%s cand_start=%s cand_kill=%s cand_destroy=%s srv_create=%s srv_start=%s old_kill=%s",
					cc ? r(cc) : "-", cs ? r(cs) : "-", ck ? r(ck) : "-", cd ? r(cd) : "-", sc ? r(sc) : "-", ss ? r(ss) : "-", ok ? r(ok) : "-"
			}' "$base.docker"
		echo
	} >>"$WORK/runs.tsv"
	local line
	line=$(tail -n1 "$WORK/runs.tsv")
	log "  $v run $run: $(g "$line" first) ms to the front door (queued $(g "$line" queued), bake $(g "$line" bake_start)–$(g "$line" bake_end), test –$(g "$line" test_end), deploy –$(g "$line" deploy_end), run over $(g "$line" over)); $state"
	return 0
}
g() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2; f = 1; exit } END { if (!f) print "-" }'; }

# ---------------------------------------------------------------- the variants
START=$(date +%s)
NOISE_BEFORE="$(docker ps -q | wc -l) containers running, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for v in $VARIANTS; do
	svc=bench-$ID-$v
	dir=$WORK/$v/repo
	make_repo "$dir" "$svc" "$v"
	free_port
	port=$PORT
	log "$v: kiln up (service $svc, front door 127.0.0.1:$port)"
	export KILN_VAR_listen=127.0.0.1:$port
	kiln_start "$dir" "$svc"
	d=$("$KILN" -C "$dir" status -json | jq -r '.services[0].image' | sed 's/^sha256://')
	[[ -n $d && $d != null ]] && MY_DIGESTS+=("$d")
	# The pipeline's first poll runs the initial commit: let it finish.
	for ((i = 0; i < 600; i++)); do
		n=$(api "/v1/runs?pipeline=$PIPE" | jq 'length')
		((n > 0)) && runs_idle && break
		((i == 50)) && [[ $v != example-poll ]] && ((n == 0)) && break # no poll: no initial run
		sleep 0.2
	done
	runs_idle || die "$v: the pipeline's first run did not finish within 120s: $(api "/v1/runs?pipeline=$PIPE")"
	sleep 1
	for ((run = 1; run <= RUNS; run++)); do
		measure "$v" "$run" "$svc" "$dir" "$port"
		sleep 1
	done
	# Images the runs baked and loaded, for the cleanup.
	while read -r d; do MY_DIGESTS+=("$d"); done < <(jq -r '.stages[]? | select(.name == "bake") | .log' "$WORK"/runs/"$v"-*.run.json 2>/dev/null |
		grep -oE '@sha256:[0-9a-f]{64}' | cut -d: -f2 | sort -u)
	cp "$WORK/runs/$v-$RUNS.show" "$WORK/$v.last-show.txt" 2>/dev/null || true
	kiln_stop
done
ELAPSED=$(($(date +%s) - START))
NOISE_AFTER="$(docker ps -q | wc -l) containers running, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
# vals VARIANT CODE: per successful run of VARIANT, runs CODE (awk) with the run's
# keys in k["name"]; d(A, B) is k[A] - k[B] ("" if either is unknown) and p(X)
# prints X if it is known: one value per line.
D='function d(a, b) { if (k[a] == "-" || k[b] == "-" || k[a] == "" || k[b] == "") return ""; return k[a] - k[b] }
function p(x) { if (x != "" && x != "-") print x }
{ delete k; for (i = 1; i <= NF; i++) { n = index($i, "="); k[substr($i, 1, n - 1)] = substr($i, n + 1) } }'
vals() { awk -v v="$1" "$D"'
	k["variant"] != v || k["ok"] != "yes" { next }
	{ '"$2"' }' "$WORK/runs.tsv"; }
med() { sort -g | awk '{ v[++k] = $1 } END { if (k == 0) { print "–"; exit } m = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2; printf "%.2f", m / 1000 }'; }
rng() { sort -g | awk '{ v[++k] = $1 } END { if (k == 0) { print ""; exit } printf " (%.2f–%.2f)", v[1] / 1000, v[k] / 1000 }'; }
q() { vals "$1" "p($2)" | med; }
qr() { local x; x=$(vals "$1" "p($2)"); printf '%s%s' "$(med <<<"$x")" "$(rng <<<"$x")"; }
okc() { awk -v v="$1" '{ for (i = 1; i <= NF; i++) { if ($i == "variant=" v) m = 1; if ($i == "ok=yes") o = 1 } if (m) { t++; if (o) ok++ } m = o = 0 } END { printf "%d/%d", ok, t }' "$WORK/runs.tsv"; }
# Inherent work (per run, ms): the git commit itself (the user's), go build (timed by
# the wrapper), the engine's work as kiln timed it (loading the image, creating and
# starting the candidate and the new server), and the health waits (the candidate's
# start -> its destroy begins, which includes the checks; the new server's start ->
# admitted, which includes min_healthy). Sets inh (and inhk, the same without the image
# load), or skips the run.
inh() { echo "gb = k[\"gobuild\"]; y = d(\"cand_kill\", \"cand_start\"); w = d(\"admitted\", \"srv_start\"); if (y == \"\" || w == \"\" || k[\"first\"] == \"-\" || k[\"load\"] == \"-\" || k[\"cand_api\"] == \"-\" || k[\"srv_api\"] == \"-\") next; inhk = k[\"git\"] + gb + k[\"cand_api\"] + y + k[\"srv_api\"] + w; inh = inhk + k[\"load\"]"; }
over() { vals "$1" "$(inh "$1"); p(k[\"first\"] - inh)"; }
overpct() { vals "$1" "$(inh "$1"); p((k[\"first\"] - inh) / k[\"first\"] * 100000)"; }
overk() { vals "$1" "$(inh "$1"); p(k[\"first\"] - inhk)"; }
overkpct() { vals "$1" "$(inh "$1"); p((k[\"first\"] - inhk) / k[\"first\"] * 100000)"; }
overnd() { vals "$1" "$(inh "$1"); p(k[\"first\"] - inh - k[\"queued\"] + k[\"git\"])"; }
title() {
	case $1 in
	example-poll) echo "example (2 replicas, min_healthy 1s), poll 1s" ;;
	example-hook) echo "example (2 replicas, min_healthy 1s), $TRIGGER" ;;
	fast-hook) echo "1 replica, min_healthy 0s, $TRIGGER" ;;
	fast-code) echo "1 replica, min_healthy 0s, $TRIGGER, + main.go change (go build)" ;;
	esac
}

report() {
	local v
	echo "# Continuous delivery: from \`git commit\` to the front door ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "The example app (examples/hello) in a git repository with a \`pipeline\` block (bake → test on a candidate → deploy), served by \`kiln up\`. Each run changes the greeting in kiln.hcl, commits, and polls the front door until it answers with the new greeting. Median (min–max) of $RUNS commits per variant, seconds after \`git commit\` started."
	echo
	echo "| variant | commit → new greeting at the front door | run queued | bake | test | deploy: start → first new answer | deploy (whole stage) | run over | kiln overhead | … with the image load | runs OK |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for v in $VARIANTS; do
		printf '| %s | **%s** | %s | %s | %s | %s | %s | %s | %s (%s %%) | %s (%s %%) | %s |\n' "$(title "$v")" "$(qr "$v" 'k["first"]')" "$(q "$v" 'k["queued"]')" \
			"$(q "$v" 'd("bake_end", "bake_start")')" "$(q "$v" 'd("test_end", "test_start")')" "$(q "$v" 'd("first", "deploy_start")')" \
			"$(q "$v" 'd("deploy_end", "deploy_start")')" "$(q "$v" 'k["finished"]')" \
			"$(over "$v" | med)" "$(overpct "$v" | med)" "$(overk "$v" | med)" "$(overkpct "$v" | med)" "$(okc "$v")"
	done
	echo
	echo "- *run queued*: the run's creation time (the poll or the webhook noticed the commit); *bake*, *test*, *deploy*: the stages' recorded start and finish (\`GET /v1/runs/ID\`, what \`kiln pipeline show\` prints); *run over*: the run's finish (all servers replaced)."
	echo "- *kiln overhead* = total − (the \`git commit\` command + go build + the engine's work as kiln timed it: loading the image, creating and starting the candidate and the new server + health waits: candidate start → its destroy begins (health gate and checks), new server start → admitted (health gate and min_healthy)). Median of the per-run values; the % is of each run's total. *… with the image load* counts loading the image into the engine as kiln's overhead too."
	echo
	echo "## Where the time goes"
	echo
	echo "Medians, seconds. Container times from Docker's events, *admitted* from kiln's events."
	echo
	printf '| step |'
	for v in $VARIANTS; do printf ' %s |' "$v"; done
	echo
	printf '| --- |'
	for v in $VARIANTS; do printf ' ---: |'; done
	echo
	row() { # LABEL EXPR
		printf '| %s |' "$1"
		for v in $VARIANTS; do printf ' %s |' "$(q "$v" "$2")"; done
		echo
	}
	row "the \`git commit\` command" 'k["git"]'
	row "commit → run queued (poll or webhook)" 'k["queued"]'
	row "queued → run started" 'd("started", "queued")'
	row "**bake stage** (checkout, parse, bake)" 'd("bake_end", "bake_start")'
	row "… of which go build (the go command, timed)" 'k["gobuild"]'
	row "… of which other go commands (go env)" 'k["goother"]'
	row "bake end → test start" 'd("test_start", "bake_end")'
	row "test: start → candidate created (image load into Docker)" 'd("cand_create", "test_start")'
	row "… of which the image load (kiln's timing)" 'k["load"]'
	row "test: candidate create+start (kiln's timing of the engine calls)" 'k["cand_api"]'
	row "test: candidate create → start (container start)" 'd("cand_start", "cand_create")'
	row "test: candidate start → destroy begins (health gate + checks)" 'd("cand_kill", "cand_start")'
	row "test: destroy begins → stage end (candidate teardown)" 'd("test_end", "cand_kill")'
	row "**test stage**" 'd("test_end", "test_start")'
	row "test end → deploy start" 'd("deploy_start", "test_end")'
	row "deploy: start → new server created" 'd("srv_create", "deploy_start")'
	row "deploy: server create → start (container start)" 'd("srv_start", "srv_create")'
	row "deploy: server create+start (kiln's timing of the engine calls)" 'k["srv_api"]'
	row "deploy: server start → admitted (health gate + min_healthy)" 'd("admitted", "srv_start")'
	row "deploy: admitted → front door answers with it" 'd("first", "admitted")'
	row "**commit → new greeting at the front door**" 'k["first"]'
	printf '| inherent: git commit + go build + image load + server create/start + health waits |'
	for v in $VARIANTS; do printf ' %s |' "$(vals "$v" "$(inh "$v"); p(inh)" | med)"; done
	echo
	printf '| **kiln overhead** (total − inherent) |'
	for v in $VARIANTS; do printf ' %s |' "$(over "$v" | med)"; done
	echo
	printf '| kiln overhead with the image load counted as kiln'"'"'s |'
	for v in $VARIANTS; do printf ' %s |' "$(overk "$v" | med)"; done
	echo
	printf '| kiln overhead without the detection (total − inherent − (commit → queued − git commit)) |'
	for v in $VARIANTS; do printf ' %s |' "$(overnd "$v" | med)"; done
	echo
	row "deploy: rest of the stage after the first new answer (rolling, draining, old servers destroyed)" 'd("deploy_end", "first")'
	echo
	echo "## Goals"
	echo
	echo "| goal | variant | result | met |"
	echo "| --- | --- | --- | :---: |"
	for v in $VARIANTS; do
		local tot pct
		tot=$(q "$v" 'k["first"]')
		pct=$(overpct "$v" | med)
		awk -v t="$tot" -v v="$v" 'BEGIN { if (t == "–") printf "| commit → front door < 10 s | %s | – | ? |\n", v; else printf "| commit → front door < 10 s | %s | %.2f s | %s |\n", v, t, (t < 10) ? "yes" : "**no**" }'
		awk -v p="$pct" -v v="$v" 'BEGIN { if (p == "–") printf "| kiln overhead < 10%% of it | %s | – | ? |\n", v; else printf "| kiln overhead < 10%% of it | %s | %.1f %% | %s |\n", v, p, (p < 10) ? "yes" : "**no**" }'
		pct=$(overkpct "$v" | med)
		awk -v p="$pct" -v v="$v" 'BEGIN { if (p == "–") printf "| … with the image load counted as overhead | %s | – | ? |\n", v; else printf "| … with the image load counted as overhead | %s | %.1f %% | %s |\n", v, p, (p < 10) ? "yes" : "**no**" }'
	done
	echo
	echo "## Every run"
	echo
	echo "| variant | run | state | front door | queued | bake | test | deploy start | admitted | deploy end | overhead |"
	echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	local line
	while read -r line; do
		v=$(g "$line" variant)
		local ov
		ov=$(awk "$D"'
			{ '"$(inh "$v")"'; printf "%.2f s", (k["first"] - inh) / 1000 }' <<<"$line")
		printf '| %s | %s | %s | %s | %s | %s–%s | %s–%s | %s | %s | %s | %s |\n' "$v" "$(g "$line" run)" "$(g "$line" state)" "$(g "$line" first)" "$(g "$line" queued)" \
			"$(g "$line" bake_start)" "$(g "$line" bake_end)" "$(g "$line" test_start)" "$(g "$line" test_end)" "$(g "$line" deploy_start)" "$(g "$line" admitted)" "$(g "$line" deploy_end)" "${ov:-–}"
	done <"$WORK/runs.tsv"
	echo
	echo "Times in ms after the commit."
	echo
	local last
	last=$(for v in $VARIANTS; do echo "$v"; done | tail -n1)
	if [[ -s $WORK/$last.last-show.txt ]]; then
		echo "The last run of $last, as \`kiln pipeline show\` prints it:"
		echo
		echo '```'
		cat "$WORK/$last.last-show.txt"
		echo '```'
		echo
	fi
	echo "## Setup"
	echo
	echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); $(go version | awk '{print $3}'); $(git --version)"
	echo "- Docker: engine $(docker version -f '{{.Server.Version}}' 2>/dev/null), storage driver $(docker info -f '{{.Driver}}' 2>/dev/null)"
	echo "- other load on the machine: before the run $NOISE_BEFORE; after it $NOISE_AFTER."
	echo "- kiln: built from $KILN_FROM. Each variant: a fresh git repository (\`git init -b main\`) of examples/hello with its service renamed, \`.gitignore\` = \`.kiln/\`, and \`pipeline \"$PIPE\" { repo = \".\", branch = \"main\", poll = \"1s\" (example-poll) or \"0s\", services = [the service], webhook_secret, check \"greets\" { path = \"/\", body = \"Hello\" } }\`; \`kiln up\` in it; the pipeline's run of the first commit is let finish before measuring. Health checks every 500ms (the example's)."
	echo "- trigger: example-poll relies on the 1s poll (which adds up to 1 s of latency); the other variants $([[ $TRIGGER == webhook ]] && echo "POST the signed webhook (\`X-Hub-Signature-256\`, as git hosts send it) right after the commit" || echo "run \`kiln pipeline trigger NAME --commit SHA\` right after the commit")."
	echo "- go: the daemon runs \`go\` from PATH; a wrapper first in its PATH logs the start and end of each call (adding a few ms of its own to each). The pipeline's bake log has no step durations."
	echo "- front door: bench/probe polls it every 10 ms from 0.2 s before the commit."
	echo "- wall time of the measurements: ${ELAPSED} s"
}

mkdir -p "$(dirname "$RESULTS_FILE")"
report | tee "$RESULTS_FILE"
log "results written to $RESULTS_FILE"
