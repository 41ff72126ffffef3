#!/usr/bin/env bash
# Proxy benchmark: the gateway vs nginx as a keep-alive reverse proxy, both in
# front of the same nginx upstream, in one run, on loopback.
#
# Usage:  bash bench/proxy.sh            (from anywhere; needs root for apt-get)
#
# Environment (defaults in brackets):
#   DURATION [10s]      wrk duration of one measured run
#   WARMUP [2s]         unmeasured wrk run before each target's first round
#   CONNS [50]          wrk connections (wrk always runs -t1: one thread)
#   ROUNDS [3]          interleaved rounds per route-table size (medians reported)
#   ROUTES ["1 10000"]  route-table sizes
#   LOADGEN_CPU [0]     core for wrk
#   PROXY_CPU [1]       core for the gateway and for the nginx proxy
#   LAYOUTS             where the upstream nginx runs, as "name:core" pairs;
#                       each round measures every layout (the upstream is
#                       re-pinned between them). Default: "separate:2" with 3
#                       or more cores; on 2 cores "shared:1 own:0" (below)
#   UPSTREAM_CPU        shorthand for LAYOUTS="custom:UPSTREAM_CPU"
#   BUILD_WAIT [600]    max seconds (in all) to wait for other rustc processes
#                       to finish and the CPU to go quiet before measuring
#                       (then measures anyway and says so)
#   QUIET_PCT [15]      "quiet" = less than this % of all CPUs busy
#   FOREIGN_MAX [5]     a run during which rustc ran or other processes plus
#   RETRIES [2]         hypervisor steal used >= FOREIGN_MAX % of a core is run
#                       again, up to RETRIES
#                       times; the last attempt is kept and flagged
#   IDLE_WAIT [3]       seconds after the gateway is up before its idle VmRSS
#                       is read (the live config is packed 1 s after a load)
#   SKIP_BUILD [0]      1 = use the existing gateway binary (GATEWAY)
#   GATEWAY [$CARGO_TARGET_DIR or target, /release/gateway]  binary to measure
#   OUT [bench/out/proxy-DATE]  where configs, logs and results go
#
# Fairness: with 3 or more cores, wrk, the proxy under test and the upstream
# each have a core. A 2-core machine cannot give each its own, so both
# compromises are measured, each with its own direct-upstream row as the
# ceiling of that layout:
#   shared  wrk on core 0; the proxy and the upstream share core 1. Every
#           proxied request costs "proxy + upstream" CPU on core 1, and the
#           p99 includes the scheduling between the two processes there.
#   own     the proxy has core 1 to itself; wrk and the upstream share
#           core 0. This measures the proxy; wrk's core is the limit.
# All servers (upstream, and a gateway and an nginx proxy per table size) run
# for the whole measurement; each round runs wrk against every one of them in
# turn, in every layout, so drift of the machine hits all alike. One worker
# each: nginx `worker_processes 1`, the gateway with TOKIO_WORKER_THREADS=1
# (and every thread of it pinned by taskset). Both proxies keep connections
# to the upstream alive, both add X-Forwarded-*/X-Real-IP headers, neither
# writes an access log.
#
# Route tables: N routes of one service each, all pointing at the upstream.
# Route i has prefix path /svc-i/v1 (every 3rd also /svc-i/v2), every 10th has
# hosts: [svc-i.example.com], every 500th is a regex path instead. The
# benchmarked request is GET /svc-${BENCH_ID}/v1/items (route 9991 of 10,000,
# no host, matched as a prefix; the 1-route table is that route alone). nginx
# gets the same table: one prefix `location` per plain path, one `server`
# block per host, and the regex routes as `location ~` (nginx checks all its
# regex locations after the longest prefix match, like a router that has to
# rule out the regex routes).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-50}
ROUNDS=${ROUNDS:-3}
ROUTES=${ROUTES:-"1 10000"}
LOADGEN_CPU=${LOADGEN_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}
if [[ -n ${UPSTREAM_CPU:-} ]]; then
    LAYOUTS=${LAYOUTS:-custom:$UPSTREAM_CPU}
elif (($(nproc) >= 3)); then
    LAYOUTS=${LAYOUTS:-separate:2}
else
    LAYOUTS=${LAYOUTS:-shared:1 own:0}
fi
FIRST_LAYOUT=${LAYOUTS%% *}
UPSTREAM_CPU=${FIRST_LAYOUT#*:}
BUILD_WAIT=${BUILD_WAIT:-600}
SKIP_BUILD=${SKIP_BUILD:-0}
IDLE_WAIT=${IDLE_WAIT:-3}
BENCH_ID=${BENCH_ID:-9991}
BENCH_PATH="/svc-${BENCH_ID}/v1/items"
OUT=${OUT:-$ROOT/bench/out/proxy-$(date +%Y%m%d-%H%M%S)}
GATEWAY=${GATEWAY:-${CARGO_TARGET_DIR:-$ROOT/target}/release/gateway}

log() { printf '[proxy.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
PIDS=()
cleanup() {
    local rc=$?
    local p i
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for i in $(seq 1 50); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() {
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    local keep=() q
    for q in "${PIDS[@]}"; do [[ $q == "$p" ]] || keep+=("$q"); done
    PIDS=("${keep[@]}")
}

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]/nginx-light/nginx}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx not found"
ncpu=$(nproc)
((ncpu >= 2)) || log "WARNING: only $ncpu core(s); pinning to separate cores is impossible"

if [[ $SKIP_BUILD != 1 ]]; then
    log "building the gateway (release)"
    (cd "$ROOT" && cargo build --release -p gateway-node)
fi
[[ -x $GATEWAY ]] || die "$GATEWAY missing"

mkdir -p "$OUT"
log "output in $OUT"

# ---------------------------------------------------------------- ports
port_free() { ! ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }
TAKEN=" "
PORT=
pick_port() { # sets PORT
    local p i
    for i in $(seq 1 200); do
        p=$((20000 + RANDOM % 30000))
        if [[ $TAKEN != *" $p "* ]] && port_free "$p"; then
            TAKEN+="$p "
            PORT=$p
            return 0
        fi
    done
    die "no free port found"
}
pick_port; UP_PORT=$PORT

# ---------------------------------------------------------------- helpers
wait_http() { # url timeout_s expected_code
    local url=$1 t=$2 want=${3:-200} i code
    for i in $(seq 1 $((t * 10))); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
        [[ $code == "$want" ]] && return 0
        sleep 0.1
    done
    return 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Percentage of all CPUs busy over the next second (from /proc/stat).
cpu_busy() {
    local a b c d e f g h t1 i1 t2 i2
    read -r _ a b c d e f g h _ </proc/stat
    t1=$((a + b + c + d + e + f + g + h)) i1=$((d + e))
    sleep 1
    read -r _ a b c d e f g h _ </proc/stat
    t2=$((a + b + c + d + e + f + g + h)) i2=$((d + e))
    echo $(((100 * ((t2 - t1) - (i2 - i1))) / ((t2 - t1) > 0 ? (t2 - t1) : 1)))
}

# Wait (bounded, BUILD_WAIT seconds in all) until no rustc runs and the
# machine is otherwise quiet (< QUIET_PCT% of all CPUs busy); others build
# and benchmark on this machine too.
QUIET_PCT=${QUIET_PCT:-15}
DISTURBED=0
GAVE_UP=0
wait_quiet() {
    local waited=0 busy=0 why
    while :; do
        why=""
        if pgrep -x rustc >/dev/null 2>&1; then
            why="a rustc process is running"
        else
            busy=$(cpu_busy)
            ((busy < QUIET_PCT)) || why="CPU ${busy}% busy (other processes)"
        fi
        [[ -z $why ]] && break
        if ((waited >= BUILD_WAIT)); then
            ((GAVE_UP)) || log "WARNING: $why after waiting; measuring anyway (noted in the summary)"
            GAVE_UP=1
            DISTURBED=1
            return 0
        fi
        ((waited == 0)) && log "$why; waiting (at most ${BUILD_WAIT}s more)"
        sleep 5
        waited=$((waited + 6))
    done
    ((waited == 0)) || log "quiet again after ~${waited}s"
    BUILD_WAIT=$((BUILD_WAIT - waited))
    ((BUILD_WAIT >= 0)) || BUILD_WAIT=0
    return 0
}

# wrk latency value -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

RESULTS=$OUT/results.tsv
printf 'target\troutes\tround\treq_s\tp50_ms\tp99_ms\terrors\tattempts\tforeign_cpu_pct\tsteal_pct\trustc_seen\tproxy_cpu_us_per_req\tupstream_cpu_us_per_req\tlayout\n' >"$RESULTS"

# CPU ticks (utime + stime, all threads) of a process and its children: the
# gateway is one process; an nginx is a master and its worker.
tree_ticks() { # pid
    proc_ticks 0 | awk -v p="$1" '$2 == p || $3 == p { t += $4 } END { print t + 0 }'
}

# CPU ticks of every process: "sample pid ppid ticks" (utime + stime).
proc_ticks() {
    # A process that ends between the glob and cat's read makes cat fail;
    # under pipefail that would end this script mid-run.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v s="$1" '{
        pid = $1; rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
        print s, pid, f[2], f[12] + f[13] }'
}

# CPU used during a run by processes that are not ours (this script, its
# children, the servers it started, wrk) and not kernel threads, in % of one
# core. Processes that start and end between two samples (1 s) are missed;
# rustc is also caught by name each second.
foreign_pct() { # samples_file seconds wrk_pid
    awk -v secs="$2" -v hz="$(getconf CLK_TCK)" -v ours="$$ $3 ${PIDS[*]}" '
        BEGIN { n = split(ours, o, " "); for (i = 1; i <= n; i++) mine[o[i]] = 1 }
        {
            s = $1; pid = $2; ppid = $3; t = $4
            if (pid in mine || ppid in mine || ppid == 2 || pid == 2) next
            if (s == 0) base[pid] = t
            last[pid] = t
        }
        END {
            for (p in last) sum += last[p] - (p in base ? base[p] : 0)
            printf "%.1f", sum * 100 / hz / (secs > 0 ? secs : 1)
        }' "$1"
}

steal_ticks() { awk '$1 == "cpu" {print $9; exit}' /proc/stat; }

dur_s() { # "10s" / "1m" / "500ms" -> whole seconds (at least 1)
    awk -v d="$1" 'BEGIN { n = d + 0; u = d; sub(/^[0-9.]+/, "", u)
        if (u == "m") n *= 60; else if (u == "h") n *= 3600; else if (u == "ms") n /= 1000
        n = int(n + 0.999); print (n < 1 ? 1 : n) }'
}

RETRIES=${RETRIES:-2}
FOREIGN_MAX=${FOREIGN_MAX:-5}
run_wrk() { # target routes round url proxy_pid ("-" for none) layout
    local target=$1 routes=$2 round=$3 url=$4 proxy_pid=$5 layout=$6
    local px0 px1 up0 up1
    local f=$OUT/wrk-$layout-$target-$routes-r$round.txt samples=$OUT/.samples
    local secs attempt wpid rustc_seen foreign i st0 steal
    secs=$(dur_s "$DURATION")
    for attempt in $(seq 1 $((RETRIES + 1))); do
        wait_quiet
        rustc_seen=0
        proc_ticks 0 >"$samples"
        st0=$(steal_ticks)
        px0=0 px1=0
        [[ $proxy_pid == - ]] || px0=$(tree_ticks "$proxy_pid")
        up0=$(tree_ticks "$UP_PID")
        taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url" >"$f" 2>&1 &
        wpid=$!
        for i in $(seq 1 $((secs + 30))); do
            sleep 1
            pgrep -x rustc >/dev/null 2>&1 && rustc_seen=1
            kill -0 "$wpid" 2>/dev/null || break
            proc_ticks "$i" >>"$samples"
        done
        wait "$wpid" || die "wrk failed for $target: $(cat "$f")"
        [[ $proxy_pid == - ]] || px1=$(tree_ticks "$proxy_pid")
        up1=$(tree_ticks "$UP_PID")
        foreign=$(foreign_pct "$samples" "$secs" "$wpid")
        steal=$(awk -v a="$st0" -v b="$(steal_ticks)" -v hz="$(getconf CLK_TCK)" -v s="$secs" \
            'BEGIN { printf "%.1f", (b - a) * 100 / hz / s }')
        if ((rustc_seen == 0)) && awk -v x="$foreign" -v y="$steal" -v m="$FOREIGN_MAX" 'BEGIN { exit !(x + y < m) }'; then
            break
        fi
        if ((attempt <= RETRIES)); then
            log "$target routes=$routes round $round disturbed (other processes used ${foreign}% of a core, hypervisor steal ${steal}%, rustc seen: $rustc_seen); running it again"
        else
            log "WARNING: $target routes=$routes round $round still disturbed after $attempt attempts (other ${foreign}%, steal ${steal}%, rustc seen: $rustc_seen); keeping it"
            DISTURBED=1
        fi
    done
    rm -f "$samples"
    local rps p50 p99 errs
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
    errs=$(awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) { x = $i; sub(/,/, "", x); n += x } }
        END {print n + 0}' "$f")
    [[ -n $rps ]] || die "could not parse $f"
    # CPU time per request (user + system, from the kernel's tick accounting):
    # what one request costs the proxy and the upstream, steadier than req/s
    # on a shared machine, though heavy steal still inflates it.
    local nreq pxus upus
    nreq=$(awk '/requests in/ {print $1; exit}' "$f")
    read -r pxus upus < <(awk -v n="$nreq" -v hz="$(getconf CLK_TCK)" -v a="$px0" -v b="$px1" \
        -v c="$up0" -v d="$up1" -v none="$([[ $proxy_pid == - ]] && echo 1 || echo 0)" 'BEGIN {
        k = 1e6 / hz / (n > 0 ? n : 1)
        if (none) printf "-"; else printf "%.2f", (b - a) * k
        printf " %.2f\n", (d - c) * k }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$routes" "$round" "$rps" "$p50" "$p99" \
        "$errs" "$attempt" "$foreign" "$steal" "$rustc_seen" "$pxus" "$upus" "$layout" >>"$RESULTS"
    log "$(printf '%-8s %-9s routes=%-6s round %s: %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  errors %s  CPU/req proxy %s us, upstream %s us  (other CPU %s%%, steal %s%%)' \
        "$layout" "$target" "$routes" "$round" "$rps" "$p50" "$p99" "$errs" "$pxus" "$upus" "$foreign" "$steal")"
}

warm() { taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"$WARMUP" "$1" >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------- upstream
NGX_PID=
start_nginx() { # name conf cpu -> sets NGX_PID
    local name=$1 conf=$2 cpu=$3 prefix=$OUT/nginx-$1
    mkdir -p "$prefix/logs"
    "$NGINX" -t -q -e "$prefix/logs/error.log" -p "$prefix" -c "$conf" >"$prefix/test.log" 2>&1 \
        || die "nginx config $conf rejected: $(cat "$prefix/test.log")"
    taskset -c "$cpu" "$NGINX" -e "$prefix/logs/error.log" -p "$prefix" -c "$conf" \
        >"$prefix/stdout.log" 2>&1 &
    NGX_PID=$!
    PIDS+=("$NGX_PID")
}

nginx_common() { # prefix
    cat <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
events { worker_connections 4096; multi_accept on; }
EOF
}

UP_DIR=$OUT/nginx-upstream
mkdir -p "$UP_DIR"
{
    nginx_common "$UP_DIR"
    cat <<EOF
http {
    access_log off;
    client_body_temp_path $UP_DIR/tmp-body;
    proxy_temp_path $UP_DIR/tmp-proxy;
    fastcgi_temp_path $UP_DIR/tmp-fastcgi;
    uwsgi_temp_path $UP_DIR/tmp-uwsgi;
    scgi_temp_path $UP_DIR/tmp-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$UP_PORT;
        location / {
            default_type application/json;
            return 200 '{"msg":"hello"}';
        }
    }
}
EOF
} >"$UP_DIR/nginx.conf"
start_nginx upstream "$UP_DIR/nginx.conf" "$UPSTREAM_CPU"
UP_PID=$NGX_PID
wait_http "http://127.0.0.1:$UP_PORT$BENCH_PATH" 10 || die "upstream nginx did not start"
log "upstream nginx pid $UP_PID on 127.0.0.1:$UP_PORT (core $UPSTREAM_CPU)"

# ---------------------------------------------------------------- configs
# kong.yml with N routes (one service each); nginx.conf with the same table.
gen_kong() { # n file
    awk -v n="$1" -v up="$UP_PORT" -v bench="$BENCH_ID" 'BEGIN {
        print "_format_version: \"3.0\""
        print "services:"
        for (k = 1; k <= n; k++) {
            i = (n == 1) ? bench : k
            printf "- name: svc-%d\n  url: http://127.0.0.1:%d\n  routes:\n  - name: route-%d\n", i, up, i
            if (i != bench && i % 500 == 0) {
                printf "    paths:\n    - \"~/svc-%d/v[0-9]+/orders/[0-9]+$\"\n", i
            } else {
                printf "    paths:\n    - /svc-%d/v1\n", i
                if (i % 3 == 0) printf "    - /svc-%d/v2\n", i
                if (i != bench && i % 10 == 0) printf "    hosts:\n    - svc-%d.example.com\n", i
            }
            print "    strip_path: false"
        }
    }' >"$2"
}

gen_nginx_proxy() { # n prefix_dir listen_port file
    local n=$1 dir=$2 port=$3 file=$4
    {
        nginx_common "$dir"
        cat <<EOF
http {
    access_log off;
    client_body_temp_path $dir/tmp-body;
    proxy_temp_path $dir/tmp-proxy;
    fastcgi_temp_path $dir/tmp-fastcgi;
    uwsgi_temp_path $dir/tmp-uwsgi;
    scgi_temp_path $dir/tmp-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server_names_hash_max_size 8192;
    server_names_hash_bucket_size 128;
    upstream up {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-Real-IP \$remote_addr;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Forwarded-Host \$host;
    proxy_set_header X-Forwarded-Port \$server_port;
EOF
        awk -v n="$n" -v port="$port" -v bench="$BENCH_ID" 'BEGIN {
            printf "    server {\n        listen 127.0.0.1:%d default_server;\n        server_name _;\n", port
            for (k = 1; k <= n; k++) {
                i = (n == 1) ? bench : k
                if (i != bench && i % 500 == 0) {
                    printf "        location ~ ^/svc-%d/v[0-9]+/orders/[0-9]+$ { proxy_pass http://up; }\n", i
                } else if (i != bench && i % 10 == 0) {
                    hosted[i] = 1
                } else {
                    printf "        location /svc-%d/v1 { proxy_pass http://up; }\n", i
                    if (i % 3 == 0) printf "        location /svc-%d/v2 { proxy_pass http://up; }\n", i
                }
            }
            printf "        location / { return 404 \"{\\\"message\\\":\\\"no Route matched with those values\\\"}\"; }\n"
            print "    }"
            for (i in hosted) {
                printf "    server {\n        listen 127.0.0.1:%d;\n        server_name svc-%d.example.com;\n", port, i
                printf "        location /svc-%d/v1 { proxy_pass http://up; }\n", i
                if (i % 3 == 0) printf "        location /svc-%d/v2 { proxy_pass http://up; }\n", i
                print "    }"
            }
            print "}"
        }'
    } >"$file"
}

# ---------------------------------------------------------------- measure
# Every server for every table size runs for the whole measurement (idle
# when not loaded), so the rounds interleave all targets and both sizes:
# a slow drift of the machine then hits every target alike.
declare -A IDLE_RSS LOAD_RSS GW_PIDS URL PROXY_PID
ROUTE_COUNT_NOTE=""
URL[upstream/-]="http://127.0.0.1:$UP_PORT$BENCH_PATH"
PROXY_PID[upstream/-]=-
ORDER=(upstream/-)
for n in $ROUTES; do
    kong=$OUT/kong-$n.yml
    gen_kong "$n" "$kong"
    if ! "$GATEWAY" validate "$kong" >"$OUT/validate-$n.log" 2>&1; then
        die "gateway validate rejected $kong: $(head -20 "$OUT/validate-$n.log")"
    fi
    log "validate ($n routes): $(cat "$OUT/validate-$n.log")"

    pick_port; GW_PORT=$PORT
    pick_port; GW_ADMIN=$PORT
    pick_port; NG_PORT=$PORT
    ng_dir=$OUT/nginx-proxy-$n
    mkdir -p "$ng_dir"
    gen_nginx_proxy "$n" "$ng_dir" "$NG_PORT" "$ng_dir/nginx.conf"
    loc=$(grep -c 'location' "$ng_dir/nginx.conf" || true)
    srv=$(grep -c 'server {' "$ng_dir/nginx.conf" || true)
    ROUTE_COUNT_NOTE+="routes=$n: nginx gets $loc locations in $srv server blocks; "

    t0=$(date +%s.%N)
    TOKIO_WORKER_THREADS=1 taskset -c "$PROXY_CPU" "$GATEWAY" run --config "$kong" \
        --proxy-listen "127.0.0.1:$GW_PORT" --admin-listen "127.0.0.1:$GW_ADMIN" \
        >"$OUT/gateway-$n.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    GW_PIDS[$n]=$GW_PID
    wait_http "http://127.0.0.1:$GW_ADMIN/status" 120 \
        || die "gateway did not come up with $n routes: $(tail -20 "$OUT/gateway-$n.log")"
    t1=$(date +%s.%N)
    # Idle means settled: a new config is packed (and freed memory given
    # back) 1 s after it goes live, so 1 s raced with it.
    sleep "$IDLE_WAIT"
    IDLE_RSS[$n]=$(rss_kb "$GW_PID")
    log "gateway pid $GW_PID ($n routes) up in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')s, idle VmRSS ${IDLE_RSS[$n]} kB"

    start_nginx "proxy-$n" "$ng_dir/nginx.conf" "$PROXY_CPU"
    wait_http "http://127.0.0.1:$NG_PORT$BENCH_PATH" 30 || die "nginx proxy did not start ($n routes)"
    log "nginx proxy pid $NGX_PID ($n routes) on 127.0.0.1:$NG_PORT"

    # Same answer through both proxies, and a 404 for an unknown path.
    for u in "http://127.0.0.1:$GW_PORT" "http://127.0.0.1:$NG_PORT"; do
        body=$(curl -s --max-time 2 "$u$BENCH_PATH")
        [[ $body == '{"msg":"hello"}' ]] || die "unexpected body from $u$BENCH_PATH: $body"
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$u/nope/not-a-route")
        [[ $code == 404 ]] || die "expected 404 from $u/nope/not-a-route, got $code"
    done
    URL[gateway/$n]="http://127.0.0.1:$GW_PORT$BENCH_PATH"
    URL[nginx/$n]="http://127.0.0.1:$NG_PORT$BENCH_PATH"
    PROXY_PID[gateway/$n]=$GW_PID
    PROXY_PID[nginx/$n]=$NGX_PID
    ORDER+=("gateway/$n" "nginx/$n")
done

# Move the upstream nginx (master and worker, all threads) to a core.
pin_upstream() { # cpu
    local p
    for p in "$UP_PID" $(pgrep -P "$UP_PID"); do
        taskset -a -p -c "$1" "$p" >/dev/null
    done
}

wait_quiet
for k in "${ORDER[@]}"; do warm "${URL[$k]}"; done
for r in $(seq 1 "$ROUNDS"); do
    for lay in $LAYOUTS; do
        pin_upstream "${lay#*:}"
        for k in "${ORDER[@]}"; do
            run_wrk "${k%/*}" "${k#*/}" "$r" "${URL[$k]}" "${PROXY_PID[$k]}" "${lay%%:*}"
        done
    done
done
for n in $ROUTES; do
    LOAD_RSS[$n]=$(rss_kb "${GW_PIDS[$n]}")
    log "gateway VmRSS after load ($n routes): ${LOAD_RSS[$n]} kB"
done

# ---------------------------------------------------------------- report
median() { sort -g | awk '{a[NR] = $1} END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { # target routes column -> values (of layout $LAY)
    awk -F'\t' -v t="$1" -v n="$2" -v c="$3" -v l="$LAY" 'NR > 1 && $1 == t && $2 == n && $14 == l {print $c}' "$RESULTS"
}
declare -A MED
SUMMARY=$OUT/summary.md
{
for lay in $LAYOUTS; do
    LAY=${lay%%:*}
    echo "### layout $LAY: wrk on core $LOADGEN_CPU, proxy on core $PROXY_CPU, upstream on core ${lay#*:}"
    echo
    echo "| target | routes | req/s | p50 (ms) | p99 (ms) | errors | proxy CPU/req (us) | upstream CPU/req (us) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for n in - $ROUTES; do
        for t in upstream gateway nginx; do
            [[ -n $(col "$t" "$n" 4) ]] || continue
            rps=$(col "$t" "$n" 4 | median)
            p50=$(col "$t" "$n" 5 | median)
            p99=$(col "$t" "$n" 6 | median)
            errs=$(col "$t" "$n" 7 | awk '{s += $1} END {print s + 0}')
            pxus=-
            [[ $t == upstream ]] || pxus=$(col "$t" "$n" 12 | median)
            upus=$(col "$t" "$n" 13 | median)
            MED[$t,$n,rps]=$rps
            MED[$t,$n,p99]=$p99
            MED[$t,$n,cpu]=$pxus
            label=$t rts=$n
            [[ $t == upstream ]] && label="upstream (direct)" && rts="-"
            [[ $t == nginx ]] && label="nginx proxy"
            printf '| %s | %s | %.0f | %.3f | %.3f | %s | %s | %s |\n' "$label" "$rts" "$rps" "$p50" "$p99" "$errs" "$pxus" "$upus"
        done
    done
    echo
    echo "| routes | gateway/nginx req/s | gateway/nginx p99 | gateway/nginx CPU per request | gateway idle VmRSS | gateway VmRSS after load |"
    echo "|---:|---:|---:|---:|---:|---:|"
    for n in $ROUTES; do
        awk -v n="$n" -v gr="${MED[gateway,$n,rps]}" -v nr="${MED[nginx,$n,rps]}" \
            -v gp="${MED[gateway,$n,p99]}" -v np="${MED[nginx,$n,p99]}" \
            -v gc="${MED[gateway,$n,cpu]}" -v nc="${MED[nginx,$n,cpu]}" \
            -v ir="${IDLE_RSS[$n]}" -v lr="${LOAD_RSS[$n]}" 'BEGIN {
            printf "| %s | %.2fx | %.2fx | %.2fx | %.1f MiB | %.1f MiB |\n", n, gr / nr, gp / np, gc / (nc > 0 ? nc : 1), ir / 1024, lr / 1024 }'
    done
    set -- $ROUTES
    if (($# >= 2)); then
        first=$1
        last=${!#}
        echo
        for t in gateway nginx; do
            awk -v t="$t" -v a="$first" -v b="$last" -v ra="${MED[$t,$first,rps]}" -v rb="${MED[$t,$last,rps]}" 'BEGIN {
                printf "- %s throughput change from %s to %s routes: %+.1f%%\n", t, a, b, (rb - ra) * 100 / ra }'
        done
    fi
    echo
done
    echo "- CPU/req: user + system CPU time of the process (all threads; nginx master and worker) during the run divided by the requests wrk completed; medians"
    echo "- wrk -t1 -c$CONNS -d$DURATION --latency, $ROUNDS rounds interleaving all layouts, targets and sizes, medians; layouts (name:upstream core): $LAYOUTS"
    echo "- VmRSS after load: after all layouts"
    echo "- ${ROUTE_COUNT_NOTE%; }"
    if ((DISTURBED)); then
        echo "- WARNING: at least one kept run was disturbed by other processes (rustc or >= ${FOREIGN_MAX}% of a core; see results.tsv and the log)"
    else
        echo "- every kept run: no rustc seen, other processes plus hypervisor steal < ${FOREIGN_MAX}% of a core (disturbed runs were re-run; see attempts in results.tsv)"
    fi
} >"$SUMMARY"
echo
cat "$SUMMARY"
echo
log "raw results: $RESULTS"
