#!/usr/bin/env bash
# bench/bake.sh - time `kiln bake` against `ko build` and `docker build` on
# the example Go HTTP app, on this machine and in the same run.
#
# See bench/README.md for what is measured and how. Quick start:
#
#     bench/bake.sh              # full run (RUNS=5), ~5-10 min on 2 cores
#     RUNS=7 bench/bake.sh       # more repetitions
#     bench/bake.sh -h           # all options
#
# The results table goes to stdout and to bench/results/bake-<date>.md;
# progress goes to stderr.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

# ---------------------------------------------------------------- settings
RUNS=${RUNS:-5}
BENCH_TOOLS=${BENCH_TOOLS:-"kiln ko docker"}
BENCH_CASES=${BENCH_CASES:-"cold cold-go noop edit"}
EXAMPLE_DIR=${EXAMPLE_DIR:-$REPO_DIR/examples/hello}
TOOLS_DIR=${TOOLS_DIR:-$BENCH_DIR/.tools}
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results}
RESULTS_FILE=${RESULTS_FILE:-$RESULTS_DIR/bake-$(date +%Y-%m-%d).md}
KILN_BIN=${KILN_BIN:-}
KILN_REF=${KILN_REF:-}          # build kiln from this commit instead of the work tree
TIMER=${TIMER:-auto}            # auto | hyperfine | builtin
REG_PORT=${REG_PORT:-5055}      # first port tried for the local registry
BENCH_SDE=${BENCH_SDE:-1700000000}  # SOURCE_DATE_EPOCH used while timing
KEEP_WORK=${KEEP_WORK:-0}
REPRO_CHECK=${REPRO_CHECK:-1}
GO_LDFLAGS=${GO_LDFLAGS:-"-s -w -X main.version=dev"}  # as in examples/hello/kiln.hcl
KO_VERSION=v0.19.1
CRANE_VERSION=v0.22.1

usage() {
	cat <<EOF
usage: bench/bake.sh [-n RUNS] [-t "kiln ko docker"] [-c "cold cold-go noop edit"] [-k] [-h]

  -n RUNS     timed repetitions per case and tool (default $RUNS; at least 5
              for numbers worth quoting)
  -t TOOLS    tools to compare (default "$BENCH_TOOLS")
  -c CASES    cases to run (default "$BENCH_CASES")
                cold     tool state cleared before each run, Go build cache warm
                cold-go  tool state and Go build cache cleared before each run
                noop     re-bake with nothing changed
                edit     re-bake after a one-line change to main.go
  -k          keep the temporary work directory (for debugging)
  -h          this help

Environment: RUNS, BENCH_TOOLS, BENCH_CASES, EXAMPLE_DIR, KILN_BIN (use this
kiln binary instead of building ./cmd/kiln), KILN_REF (build kiln from
that commit, e.g. HEAD, via git archive, not from the work tree), TIMER (auto|hyperfine|builtin),
REG_PORT, BENCH_SDE, KEEP_WORK=1, REPRO_CHECK=0 (skip digest check),
RESULTS_FILE, TOOLS_DIR (where ko and crane are installed).
EOF
}

while getopts ":n:t:c:kh" opt; do
	case $opt in
	n) RUNS=$OPTARG ;;
	t) BENCH_TOOLS=$OPTARG ;;
	c) BENCH_CASES=$OPTARG ;;
	k) KEEP_WORK=1 ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }
has() { local w; for w in $2; do [[ $w == "$1" ]] && return 0; done; return 1; }

[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || die "RUNS must be a positive integer (got '$RUNS')"
((RUNS >= 5)) || log "warning: RUNS=$RUNS < 5; medians will be noisy"
for t in $BENCH_TOOLS; do has "$t" "kiln ko docker" || die "unknown tool '$t' (kiln, ko, docker)"; done
for c in $BENCH_CASES; do has "$c" "cold cold-go noop edit" || die "unknown case '$c' (cold, cold-go, noop, edit)"; done

# ---------------------------------------------------------------- preflight
command -v go >/dev/null || die "go is not on PATH"

if has docker "$BENCH_TOOLS"; then
	command -v docker >/dev/null ||
		die "docker CLI not found; install it or run with -t 'kiln ko'"
	if ! docker_err=$(docker info 2>&1 >/dev/null); then
		die "the Docker daemon is not reachable ('docker info' failed):
$docker_err
Start it (e.g. 'service docker start' or 'dockerd &') or leave docker out: -t 'kiln ko'"
	fi
	# The docker CLI only speaks BuildKit through the buildx plugin; without it
	# DOCKER_BUILDKIT=1 is an error, so fall back to the legacy builder.
	if [[ -z ${DOCKER_BUILDKIT:-} ]]; then
		if docker buildx version >/dev/null 2>&1; then DOCKER_BUILDKIT=1; else DOCKER_BUILDKIT=0; fi
	fi
	export DOCKER_BUILDKIT
	if [[ $DOCKER_BUILDKIT == 1 ]]; then DOCKER_BUILDER="BuildKit (buildx)"; else DOCKER_BUILDER="legacy builder (DOCKER_BUILDKIT=0; no buildx plugin)"; fi
fi

install_tool() { # name module version
	local bin=$TOOLS_DIR/$1
	if [[ -x $bin ]] && [[ $("$bin" version 2>/dev/null | head -n1) == "$3" ]]; then return 0; fi
	log "installing $1 $3 into $TOOLS_DIR (go install $2@$3)"
	mkdir -p "$TOOLS_DIR"
	(cd /tmp && GOBIN=$TOOLS_DIR GOFLAGS= go install "$2@$3") >&2 ||
		die "could not install $1 ($2@$3); is the Go module proxy reachable?"
}
if has ko "$BENCH_TOOLS"; then
	install_tool ko github.com/google/ko "$KO_VERSION"
	install_tool crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION"
fi
KO=$TOOLS_DIR/ko
CRANE=$TOOLS_DIR/crane

if [[ $TIMER == auto ]]; then
	if command -v hyperfine >/dev/null; then TIMER=hyperfine; else TIMER=builtin; fi
fi
[[ $TIMER == builtin ]] || command -v hyperfine >/dev/null ||
	die "TIMER=hyperfine but hyperfine is not installed (apt-get install -y hyperfine)"
log "timer: $TIMER"

# ---------------------------------------------------------------- work dir
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bake-bench.XXXXXX")
REG_PID=
cleanup() {
	local rc=$?
	if [[ -n $REG_PID ]]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
	if has docker "$BENCH_TOOLS" && command -v docker >/dev/null; then
		docker image ls -q --filter label=kiln-bench=1 2>/dev/null | sort -u |
			xargs -r docker rmi -f >/dev/null 2>&1 || true
	fi
	if [[ $KEEP_WORK == 1 || $rc -ne 0 ]]; then
		log "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	return $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/bin" "$WORK/out" "$WORK/samples"
q() { printf '%q' "$1"; }

# --- kiln binary
KILN_NOTE=
KILN_FROM=
if has kiln "$BENCH_TOOLS"; then
	if [[ -n $KILN_BIN ]]; then
		[[ -x $KILN_BIN ]] || die "KILN_BIN=$KILN_BIN is not executable"
		cp "$KILN_BIN" "$WORK/bin/kiln"
		KILN_FROM=$KILN_BIN
	elif [[ -n $KILN_REF ]]; then
		rev=$(cd "$REPO_DIR" && git rev-parse --short "$KILN_REF^{commit}") || die "KILN_REF=$KILN_REF is not a commit"
		log "building kiln from commit $rev (git archive, the work tree is not used)"
		mkdir -p "$WORK/kiln-src"
		(cd "$REPO_DIR" && git archive "$rev") | tar -x -C "$WORK/kiln-src"
		(cd "$WORK/kiln-src" && go build -o "$WORK/bin/kiln" ./cmd/kiln) >&2 ||
			die "go build ./cmd/kiln failed at commit $rev"
		KILN_FROM="./cmd/kiln at commit $rev"
	elif [[ -f $REPO_DIR/cmd/kiln/main.go ]]; then
		log "building kiln from $REPO_DIR/cmd/kiln"
		(cd "$REPO_DIR" && go build -o "$WORK/bin/kiln" ./cmd/kiln) >&2 ||
			die "go build ./cmd/kiln failed in the work tree; KILN_REF=HEAD builds the last commit instead"
		KILN_FROM="./cmd/kiln at $(cd "$REPO_DIR" && git rev-parse --short HEAD 2>/dev/null || echo 'a tree with no commit')"
		if [[ -n $(cd "$REPO_DIR" && git status --porcelain -- cmd internal go.mod go.sum 2>/dev/null) ]]; then
			KILN_FROM+=" (with uncommitted changes)"
		fi
	else
		log "warning: $REPO_DIR/cmd/kiln/main.go does not exist; skipping kiln"
		KILN_NOTE="kiln skipped: cmd/kiln did not exist"
		BENCH_TOOLS=$(for t in $BENCH_TOOLS; do [[ $t == kiln ]] || printf '%s ' "$t"; done)
	fi
fi
KILN=$WORK/bin/kiln

# --- the example app: one copy per tool so their state never mixes
SRC_TEMPLATE=$WORK/example
if [[ -f $EXAMPLE_DIR/main.go ]]; then
	cp -a "$EXAMPLE_DIR/." "$SRC_TEMPLATE"
	rm -rf "$SRC_TEMPLATE/.kiln"
	EXAMPLE_NOTE="$EXAMPLE_DIR"
else
	log "warning: $EXAMPLE_DIR/main.go not found; using a built-in equivalent example"
	EXAMPLE_NOTE="built-in stand-in (examples/hello was missing)"
	mkdir -p "$SRC_TEMPLATE"
	cat >"$SRC_TEMPLATE/go.mod" <<'EOF'
module example.com/hello

go 1.22
EOF
	cat >"$SRC_TEMPLATE/main.go" <<'EOF'
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

const greeting = "hello from kiln"

func main() {
	addr := ":8080"
	if p := os.Getenv("PORT"); p != "" {
		addr = ":" + p
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, greeting) })
	log.Fatal(http.ListenAndServe(addr, nil))
}
EOF
	mkdir -p "$SRC_TEMPLATE/static"
	printf '<!doctype html>\n<title>hello</title>\n' >"$SRC_TEMPLATE/static/index.html"
	cat >"$SRC_TEMPLATE/kiln.hcl" <<'EOF'
image "hello" {
  from = "scratch"
  go {
    package = "."
    ldflags = ["-s", "-w", "-X main.version=dev"]
  }
  copy "static" {
    to = "/srv/static"
  }
  file "/etc/hello/greeting.txt" {
    content = "Hello from kiln!\n"
  }
  env = {
    STATIC_DIR    = "/srv/static"
    GREETING_FILE = "/etc/hello/greeting.txt"
  }
  expose = [8080]
  user   = "65532:65532"
}
EOF
fi
[[ -d $SRC_TEMPLATE/static ]] ||
	die "$EXAMPLE_DIR has no static/ directory: the ko and docker builds mirror examples/hello/kiln.hcl, which copies it"
# The "edit" case rewrites one line of main.go. So that it does not depend on
# the example's wording, the benchmark appends a marker string that ends up in
# the binary (init keeps it reachable, so the linker cannot drop it): changing
# it changes main.go, the compiled package, the binary and the image digest.
cat >>"$SRC_TEMPLATE/main.go" <<'EOF'

// Appended by bench/bake.sh; its "edit" case rewrites the next line.
var benchMarker = "kiln-bench-0"

var benchSink string

func init() { benchSink = benchMarker }
EOF
for t in kiln ko docker; do
	mkdir -p "$WORK/$t"
	cp -a "$SRC_TEMPLATE" "$WORK/$t/src"
done

# edit helper: `edit DIR VALUE` sets the marker; `edit DIR` bumps a counter so
# every repetition compiles a source the Go build cache has never seen.
cat >"$WORK/bin/edit" <<EOF
#!/usr/bin/env bash
set -euo pipefail
dir=\$1
if [[ \$# -ge 2 ]]; then v=\$2; else
	n=\$(cat "\$dir/../edit-counter" 2>/dev/null || echo 0); n=\$((n + 1))
	echo "\$n" >"\$dir/../edit-counter"; v=\$n
fi
sed -i "s/^var benchMarker = \"kiln-bench-[0-9]*\"\$/var benchMarker = \"kiln-bench-\$v\"/" "\$dir/main.go"
grep -q "^var benchMarker = \"kiln-bench-\$v\"\$" "\$dir/main.go"
EOF
chmod +x "$WORK/bin/edit"

# ---------------------------------------------------------------- environment shared by all tools
# A private Go build cache, so that "cold-go" can empty it without touching
# the user's, and so every tool sees the same cache. CGO is off for all three
# (ko's default; the Dockerfile binary is static). SOURCE_DATE_EPOCH is fixed
# while timing (kiln and ko honour it; the legacy docker builder does not).
export GOCACHE=$WORK/gocache
export CGO_ENABLED=0
export SOURCE_DATE_EPOCH=$BENCH_SDE
mkdir -p "$GOCACHE"

# --- local registry holding an empty ("scratch") base image for ko
if has ko "$BENCH_TOOLS"; then
	port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
	for ((i = 0; i < 20; i++)); do port_busy "$REG_PORT" && REG_PORT=$((REG_PORT + 1)) || break; done
	port_busy "$REG_PORT" && die "no free port for the local registry near $REG_PORT (set REG_PORT)"
	"$CRANE" registry serve --address "127.0.0.1:$REG_PORT" >"$WORK/registry.log" 2>&1 &
	REG_PID=$!
	for ((i = 0; i < 100; i++)); do port_busy "$REG_PORT" && break; kill -0 "$REG_PID" 2>/dev/null || break; sleep 0.05; done
	port_busy "$REG_PORT" || die "crane registry serve did not start: $(cat "$WORK/registry.log")"
	log "local registry (crane registry serve) on 127.0.0.1:$REG_PORT"

	# An OCI layout with a zero-layer linux/amd64 image, written by hand.
	base=$WORK/scratch-layout
	mkdir -p "$base/blobs/sha256"
	printf '{"imageLayoutVersion":"1.0.0"}' >"$base/oci-layout"
	blob() { local d; d=$(printf '%s' "$1" | sha256sum | cut -d' ' -f1); printf '%s' "$1" >"$base/blobs/sha256/$d"; echo "$d"; }
	cfg='{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}'
	cfg_d=$(blob "$cfg")
	man=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[]}' "$cfg_d" "${#cfg}")
	man_d=$(blob "$man")
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d}]}' "$man_d" "${#man}" >"$base/index.json"
	"$CRANE" push "$base" "127.0.0.1:$REG_PORT/scratch:latest" >/dev/null 2>"$WORK/out/crane-push.log" ||
		die "crane push of the scratch base failed: $(cat "$WORK/out/crane-push.log")"
	export KO_DEFAULTBASEIMAGE=127.0.0.1:$REG_PORT/scratch:latest
	export KO_DOCKER_REPO=127.0.0.1:$REG_PORT/hello # only names the image; --push=false
fi

# ---------------------------------------------------------------- per-tool scripts
# <tool>-run: one build; writes the digest to $WORK/<tool>/digest.
# <tool>-clean: remove the tool's own state (not the Go build cache).
mkscript() { { echo '#!/usr/bin/env bash'; echo 'set -euo pipefail'; cat; } >"$WORK/bin/$1"; chmod +x "$WORK/bin/$1"; }

W=$(q "$WORK")
mkscript kiln-run <<EOF
cd $W/kiln
$(q "$KILN") -C $W/kiln/src bake >out 2>>err
line=\$(grep -E '^[^@[:space:]]+@sha256:[0-9a-f]{64}\$' out | head -n1) || {
	echo "kiln bake printed no NAME@sha256:<hex> line on stdout; stdout was:" >&2; cat out >&2; exit 1; }
echo "\${line#*@}" >digest
EOF
mkscript kiln-clean <<EOF
rm -rf $W/kiln/src/.kiln
EOF

# ko: the same go build flags, through .ko.yaml. Static files go in kodata/,
# ko's only way to add files (they land in /var/run/ko, not /srv/static); ko
# cannot write other files or set env, user or exposed ports.
cat >"$WORK/ko/src/.ko.yaml" <<EOF
builds:
- id: hello
  main: .
  ldflags: ["$GO_LDFLAGS"]
EOF
cp -a "$WORK/ko/src/static" "$WORK/ko/src/kodata"
mkscript ko-run <<EOF
cd $W/ko/src
# Relative layout path: ko turns it into an image reference, which must be
# lower case, and the absolute temp path may not be.
$(q "$KO") build --bare --push=false --oci-layout-path ../layout . >../out 2>>../err
{ grep -oE 'sha256:[0-9a-f]{64}' ../out || true; } | tail -n1 >../digest
[[ -s ../digest ]] || { echo "ko build printed no digest; stdout was:" >&2; cat ../out >&2; exit 1; }
EOF
mkscript ko-clean <<EOF
rm -rf $W/ko/layout
EOF

# docker: the example's directory is the build context; the Dockerfile
# mirrors kiln.hcl (binary at /app/hello as kiln and ko put it).
cat >"$WORK/docker/src/Dockerfile" <<'EOF'
FROM scratch
COPY hello.bin /app/hello
COPY static /srv/static
COPY greeting.txt /etc/hello/greeting.txt
ENV STATIC_DIR=/srv/static GREETING_FILE=/etc/hello/greeting.txt
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/app/hello"]
EOF
printf '*\n!hello.bin\n!static\n!greeting.txt\n' >"$WORK/docker/src/.dockerignore"
printf 'Hello from kiln!\n' >"$WORK/docker/src/greeting.txt"
mkscript docker-run <<EOF
cd $W/docker/src
go build -trimpath -ldflags=$(q "$GO_LDFLAGS") -o hello.bin . 2>>../err
rm -f ../iid
docker build -q --iidfile ../iid --label kiln-bench=1 -t kiln-bench/hello:latest . >../out 2>>../err
cp ../iid ../digest
EOF
mkscript docker-clean <<EOF
rm -f $W/docker/src/hello.bin
docker image ls -q --filter label=kiln-bench=1 | sort -u | xargs -r docker rmi -f >/dev/null
$(if [[ ${DOCKER_BUILDKIT:-0} == 1 ]]; then echo 'docker builder prune -af >/dev/null'; fi)
EOF

# ---------------------------------------------------------------- timing
# measure CASE TOOL PREPARE: times "$WORK/bin/TOOL-run" RUNS times, running
# PREPARE (a shell command) before each run; prints "median mean min max".
measure() {
	local case=$1 tool=$2 prep=$3 cmd=$WORK/bin/$2-run name="$1/$2"
	if [[ $TIMER == hyperfine ]]; then
		local csv=$WORK/samples/$case-$tool.csv
		hyperfine --shell=bash --style basic --runs "$RUNS" --prepare "$prep" \
			--command-name "$name" --export-csv "$csv" "$(q "$cmd")" >&2 ||
			die "$name failed; see $WORK/$tool/err"
		# command,mean,stddev,median,user,system,min,max
		awk -F, 'NR==2 { printf "%.4f %.4f %.4f %.4f\n", $4, $2, $7, $8 }' "$csv"
	else
		local f=$WORK/samples/$case-$tool.txt i t0 t1
		: >"$f"
		for ((i = 1; i <= RUNS; i++)); do
			bash -c "$prep" || die "$name: prepare failed"
			t0=$(date +%s.%N)
			"$cmd" || die "$name failed; see $WORK/$tool/err"
			t1=$(date +%s.%N)
			awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }' >>"$f"
			log "  $name run $i/$RUNS: $(tail -n1 "$f") s"
		done
		sort -g "$f" | awk '{ v[NR] = $1; s += $1 } END {
			m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.4f %.4f %.4f %.4f\n", m, s / NR, v[1], v[NR] }'
	fi
}

declare -A RES DIGEST_LAST
START=$(date +%s)
for case in $BENCH_CASES; do
	for tool in $BENCH_TOOLS; do
		src=$WORK/$tool/src
		"$WORK/bin/edit" "$src" 0 # every case starts from the baseline source
		clean=$WORK/bin/$tool-clean
		case $case in
		cold) prep=$(q "$clean") ;;
		cold-go) prep="$(q "$clean") && rm -rf $(q "$GOCACHE")" ;;
		noop) prep=: ;;
		edit) prep="$(q "$WORK/bin/edit") $(q "$src")" ;;
		esac
		# Untimed warm-up: fills the Go build cache for this tool's flags (cold)
		# and leaves a baked state behind (noop, edit). Not needed for cold-go.
		if [[ $case != cold-go ]]; then
			bash -c "$prep" && "$WORK/bin/$tool-run" || die "$case/$tool warm-up failed; see $WORK/$tool/err"
		fi
		log "$case / $tool: $RUNS runs"
		RES[$case/$tool]=$(measure "$case" "$tool" "$prep")
		DIGEST_LAST[$case/$tool]=$(cat "$WORK/$tool/digest")
		log "$case / $tool: median $(cut -d' ' -f1 <<<"${RES[$case/$tool]}") s"
	done
done

# ---------------------------------------------------------------- digest reproducibility
# Two builds of the same (baseline) source, each from a clean tool state,
# with SOURCE_DATE_EPOCH fixed and then unset. Not timed.
declare -A REPRO
if [[ $REPRO_CHECK == 1 ]]; then
	for sde in set unset; do
		for tool in $BENCH_TOOLS; do
			"$WORK/bin/edit" "$WORK/$tool/src" 0
			d=()
			for i in 1 2; do
				"$WORK/bin/$tool-clean"
				if [[ $sde == set ]]; then
					"$WORK/bin/$tool-run"
				else
					env -u SOURCE_DATE_EPOCH "$WORK/bin/$tool-run"
				fi || die "reproducibility run $i of $tool failed; see $WORK/$tool/err"
				d+=("$(cat "$WORK/$tool/digest")")
				if [[ $tool == docker ]]; then sleep 1.1; fi # let wall-clock timestamps tick
			done
			if [[ ${d[0]} == "${d[1]}" ]]; then r="yes"; else r="**no**"; fi
			REPRO[$sde/$tool]="$r (\`${d[0]:7:12}\` / \`${d[1]:7:12}\`)"
			log "digest, SOURCE_DATE_EPOCH $sde, $tool: ${d[0]} ${d[1]}"
		done
	done
fi
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------- report
label() {
	case $1 in
	cold) echo "(a) cold: tool state cleared, Go build cache warm" ;;
	cold-go) echo "(a') cold: tool state and Go build cache cleared" ;;
	noop) echo "(b) re-bake, nothing changed" ;;
	edit) echo "(c) re-bake after a one-line edit of main.go" ;;
	esac
}
tool_title() {
	case $1 in kiln) echo "kiln bake" ;; ko) echo "ko build" ;; docker) echo "go build + docker build" ;; esac
}

# noisy "median mean min max": a mark when the spread exceeds 25% of the median.
noisy() {
	awk -v r="$1" 'BEGIN { split(r, v, " "); if (v[1] > 0 && (v[4] - v[3]) / v[1] > 0.25) printf " †" }'
}

report() {
	local case tool med ko_med ratio
	echo "# kiln bake vs ko build vs docker build ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "Median wall-clock seconds of $RUNS run(s) (ratio vs ko build; < 1 is faster than ko)."
	echo
	printf '| case |'; for tool in $BENCH_TOOLS; do printf ' %s |' "$(tool_title "$tool")"; done; echo
	printf '| --- |'; for tool in $BENCH_TOOLS; do printf ' ---: |'; done; echo
	for case in $BENCH_CASES; do
		printf '| %s |' "$(label "$case")"
		ko_med=
		[[ -n ${RES[$case/ko]:-} ]] && ko_med=$(cut -d' ' -f1 <<<"${RES[$case/ko]}")
		for tool in $BENCH_TOOLS; do
			med=$(cut -d' ' -f1 <<<"${RES[$case/$tool]}")
			if [[ -n $ko_med ]]; then
				ratio=$(awk -v a="$med" -v b="$ko_med" 'BEGIN { printf "%.2f×", a / b }')
			else ratio="n/a"; fi
			printf ' %.2f s (%s)%s |' "$med" "$ratio" "$(noisy "${RES[$case/$tool]}")"
		done
		echo
	done
	if [[ $REPRO_CHECK == 1 ]]; then
		for sde in set unset; do
			if [[ $sde == set ]]; then
				printf '| digest identical, 2 clean runs, SOURCE_DATE_EPOCH=%s |' "$BENCH_SDE"
			else
				printf '| digest identical, 2 clean runs, SOURCE_DATE_EPOCH unset |'
			fi
			for tool in $BENCH_TOOLS; do printf ' %s |' "${REPRO[$sde/$tool]}"; done
			echo
		done
	fi
	echo
	echo "† min-max spread above 25% of the median: too noisy to rank the tools on; re-run on a quiet machine or with more runs."
	echo
	echo "Detail (seconds):"
	echo
	echo "| case | tool | median | mean | min | max |"
	echo "| --- | --- | ---: | ---: | ---: | ---: |"
	for case in $BENCH_CASES; do
		for tool in $BENCH_TOOLS; do
			read -r med mean min max <<<"${RES[$case/$tool]}"
			printf '| %s | %s | %.3f | %.3f | %.3f | %.3f |\n' "$case" "$tool" "$med" "$mean" "$min" "$max"
		done
	done
	echo
	echo "Setup:"
	echo
	echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
	echo "- $(go version)"
	echo "- timer: $TIMER$( [[ $TIMER == hyperfine ]] && echo " ($(hyperfine --version))"), $RUNS runs per cell, one untimed warm-up before each cell except cold-go"
	echo "- example: $EXAMPLE_NOTE (copied to a temp dir, plus a marker line that the edit case changes)"
	if has kiln "$BENCH_TOOLS"; then
		echo "- kiln: built from $KILN_FROM; \`kiln -C DIR bake\`; cold = \`rm -rf DIR/.kiln\`"
	fi
	if [[ -n $KILN_NOTE ]]; then echo "- $KILN_NOTE"; fi
	if has ko "$BENCH_TOOLS"; then
		echo "- ko $KO_VERSION: \`ko build --bare --push=false --oci-layout-path DIR .\`, base \`$KO_DEFAULTBASEIMAGE\` (a zero-layer image in a local \`crane registry serve\`), ldflags \`$GO_LDFLAGS\` via .ko.yaml, static/ as kodata/, default SBOM, no KOCACHE; cold = remove the OCI layout. ko cannot add the greeting file, env, user or port, so its image is slightly smaller"
	fi
	if has docker "$BENCH_TOOLS"; then
		echo "- docker: client $(docker version -f '{{.Client.Version}}' 2>/dev/null), engine $(docker version -f '{{.Server.Version}}' 2>/dev/null), $DOCKER_BUILDER; timed step = \`go build -trimpath -ldflags='$GO_LDFLAGS'\` + \`docker build -q --iidfile\` of a \`FROM scratch\` Dockerfile mirroring kiln.hcl (binary, static/, greeting file, ENV, EXPOSE, USER); digest = image ID (config digest); cold = remove the images and the binary"
	fi
	echo "- all tools: private GOCACHE shared by the three tools, CGO_ENABLED=0, SOURCE_DATE_EPOCH=$BENCH_SDE while timing"
	echo "- wall time of the measurements: ${ELAPSED} s"
}

mkdir -p "$(dirname "$RESULTS_FILE")"
report | tee "$RESULTS_FILE"
log "results written to $RESULTS_FILE"
