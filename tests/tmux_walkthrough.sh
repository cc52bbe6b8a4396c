#!/usr/bin/env bash
# Drive the real `relaybox` UI in tmux as an admin would, and save every screen.
#
#   tests/tmux_walkthrough.sh [OUT_DIR] [WIDTHxHEIGHT]
#
# Starts relaybox (engine in-process) on a loopback port with a temporary state dir, sends a
# few messages (one route holds its mail, the other points at a smart host that is not there,
# so mail defers), then walks the Queue pane, the inspector (details and raw), a filter (a
# domain, a subject), ages moving on, the state views and sort (by Size, a column hidden below
# 100 columns), the Destinations pane (a destination, an attempt's transcript), the Log pane,
# help, the Sessions pane (a session held open by a client whose EHLO carries ESC sequences, its
# transcript followed live), the Config pane (route tester, a rule added, reviewed and applied,
# the TOML and History tabs, a rollback), the log file reopened on SIGUSR1 and the quit
# question; then checks the log file the UI wrote in the state directory, and attaches to a
# headless engine that relayed mail first to see the Log pane open with that history. Each
# screen is saved as text in OUT_DIR (default: a new temp dir). Loopback only; every wait is
# bounded.
set -euo pipefail

out=${1:-$(mktemp -d -t relaybox-walkthrough.XXXXXX)}
size=${2:-120x32}
width=${size%x*}
height=${size#*x}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
[ -x "$python" ] || python=python3
mkdir -p "$out"
work=$(mktemp -d -t relaybox-walk-state.XXXXXX)
port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dead=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
session="walk$$"
tmux_() { tmux -L "$session" "$@"; }
cleanup() { tmux_ kill-server >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/relaybox.toml" <<EOF
[server]
hostname = "relay.office.example"
state_dir = "$work/state"

[[listeners]]
listen = ["127.0.0.1:$port"]
allowed_networks = ["127.0.0.0/8"]

[dns]
resolvers = ["127.0.0.1:9"]
timeout = 0.5

[[routes]]
domains = ["held.example"]
transport = "hold"

[[routes]]
domains = ["*"]
transport = "smarthost"
hosts = ["127.0.0.1:$dead"]
tls = "opportunistic"
EOF

shot() {  # shot NAME: save the screen
    sleep "${2:-0.8}"
    tmux_ capture-pane -p -t "$session" >"$out/$1.txt"
    echo "saved $out/$1.txt"
}
keys() { tmux_ send-keys -t "$session" "$@"; }
wait_for() {  # wait_for TEXT: until the screen shows TEXT (10 s at most)
    for _ in $(seq 100); do
        tmux_ capture-pane -p -t "$session" | grep -qF -- "$1" && return 0
        sleep 0.1
    done
    echo "walkthrough: the screen never showed: $1" >&2
    tmux_ capture-pane -p -t "$session" >&2
    exit 1
}

tmux_ new-session -d -s "$session" -x "$width" -y "$height" \
    "cd '$here' && '$python' -m relaybox --config '$work/relaybox.toml'; echo \"exit status \$?\"; sleep 5"
wait_for "Queue ·"

"$python" - "$port" <<'EOF'
import smtplib, sys
port = int(sys.argv[1])
mail = [
    ("scanner@printer.local", ["accounts@example.org"], "Scan to email"),
    ("app@office.example", ["a@example.net", "b@example.net", "c@example.net"], "Nightly report"),
    ("alice@office.example", ["bob@held.example"], "Held by its route"),
]
for sender, rcpts, subject in mail:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail(sender, rcpts, f"From: {sender}\r\nTo: {rcpts[0]}\r\nSubject: {subject}\r\n\r\nHello.\r\n")
EOF
wait_for "held"
shot 01-queue 1.5
keys j; shot 02-queue-cursor-down 0.4
keys Enter; wait_for "Recipients"; shot 03-inspector
keys G; wait_for "Delivery attempt 1"; shot 03b-inspector-attempts 0.3
keys m; wait_for "Raw message"; shot 04-inspector-raw
keys Escape; shot 05-back-to-queue 0.5
keys / ; keys -l "@example.net"; keys Enter; shot 06-filter-domain
keys Escape; shot 07-filter-cleared 0.6
keys / ; keys -l "Nightly"; keys Enter; wait_for "filter 'Nightly'"; shot 07b-filter-subject
keys Escape; wait_for "3 messages"; shot 07c-ages-now 0.3; shot 07d-ages-3s-later 3
keys v; shot 08-view-deferred 0.6
keys s; shot 09-sorted-by-next-column 0.6
keys s s; wait_for "sorted by Size"; shot 09b-sorted-by-size 0.4
keys 2; wait_for "Destinations ·"; wait_for "smarthost:127.0.0.1"; shot 09c-destinations 0.5
keys Enter; wait_for "Recent attempts"; wait_for "deferred via"; shot 09d-destination 0.5
keys Tab Enter; wait_for "Attempt ·"; shot 09e-attempt-transcript 0.3
keys Escape; wait_for "Recent attempts"; sleep 0.5; keys Escape; wait_for "Destinations ·"
keys 4; shot 10-log
keys '?'; shot 11-help
keys Escape; sleep 0.4; keys 6; wait_for "Config ·"; wait_for "as applied"; shot 12-config-routes 0.5
keys t; wait_for "Route tester"; keys -l "bob@held.example"; wait_for "Rule 1"
shot 13-route-tester 0.3
keys Escape; sleep 0.4; keys a; wait_for "Add a routing rule"; sleep 0.3
keys -l "partner.example"; keys Enter Enter C-u; keys -l "hold"; keys Enter Enter Enter Enter Enter
wait_for "edited, not applied"; shot 14-config-rule-added 0.3
keys w; wait_for "y applies"; shot 15-config-review 0.3
keys y; wait_for "as applied"; shot 16-config-applied 0.5
grep -qF 'partner.example' "$work/relaybox.toml" || { echo "walkthrough: the rule was not written" >&2; exit 1; }
keys ']' ']' ']' ']' ']'; wait_for "[[routes]]"; shot 17-config-toml 0.3
keys Escape; sleep 0.4; keys ']'; wait_for "Trigger"; wait_for "ui"; shot 18-config-history 0.3
keys z; wait_for "Roll back to the version"; keys y; wait_for "rollback  routes"; shot 19-config-rolled-back 0.5
grep -qF 'partner.example' "$work/relaybox.toml" && { echo "walkthrough: the rollback did not restore the file" >&2; exit 1; }
# Sessions (key 3): a client holds a session open; its EHLO name carries ESC sequences, which
# must show as escapes. It says NOOP once $work/go exists, and QUIT once $work/stop does.
"$python" - "$port" "$work" <<'EOF' &
import pathlib, socket, sys, time
port, work = int(sys.argv[1]), pathlib.Path(sys.argv[2])
f = socket.create_connection(("127.0.0.1", port), timeout=10).makefile("rwb")
def say(line):
    f.write(line + b"\r\n"); f.flush()
    while f.readline()[3:4] == b"-":
        pass
f.readline()
say(b"EHLO client.office.example")
say(b"EHLO evil\x1b[2J\x1b]0;owned\x07.test")
for flag, line in (("go", b"NOOP typed while watched"), ("stop", b"QUIT")):
    deadline = time.monotonic() + 60
    while not (work / flag).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    say(line)
EOF
holder=$!
keys 3; wait_for "Sessions ·"; wait_for "1 inbound"; shot 20-sessions 0.3
keys Enter; wait_for "Session S"; wait_for "501 5.5.2"; shot 21-session-transcript 0.3
touch "$work/go"; wait_for "NOOP typed while watched"; shot 22-session-live 0.3
keys Escape; wait_for "Sessions ·"; shot 23-sessions-back 0.3
touch "$work/stop"; wait "$holder"; wait_for "0 inbound"; shot 24-sessions-closed 0.3
keys 1; keys h; shot 25-hold-under-cursor
# logrotate's move and SIGUSR1: the relay beside the UI reopens its log file (and lives on).
ui_pid=$(tmux_ capture-pane -p -t "$session" | grep -o 'in-process (pid [0-9]*' | grep -o '[0-9]*$')
mv "$work/state/relaybox.log" "$work/state/relaybox.log.moved"
kill -USR1 "$ui_pid"
for _ in $(seq 50); do [ -e "$work/state/relaybox.log" ] && break; sleep 0.1; done
[ -e "$work/state/relaybox.log" ] || { echo "walkthrough: no new log file after SIGUSR1" >&2; exit 1; }
keys q; wait_for "stops the relay"; shot 26-quit-question 0.3
keys n; shot 27-quit-declined 0.4
keys q; keys y; wait_for "exit status"; shot 28-after-quit 0.3

# Beside the UI the mail log went to the state directory, a line for every outcome; after
# SIGUSR1, to a new file (the relay's stop is in it).
log_file="$work/state/relaybox.log"
for line in ' accepted ' ' held ' ' deferred '; do
    grep -qF -- "$line" "$log_file.moved" || { echo "walkthrough: no '$line' line in $log_file.moved" >&2; exit 1; }
done
grep -qF ' stopped ' "$log_file" || { echo "walkthrough: the reopened $log_file lacks the stop" >&2; exit 1; }
cat "$log_file.moved" "$log_file" >"$out/29-relaybox.log"; echo "saved $out/29-relaybox.log"

# A headless engine that has relayed mail before the UI comes: the Log pane, attached, opens
# with that history.
for _ in $(seq 100); do tmux_ has-session -t "$session" 2>/dev/null || break; sleep 0.1; done
"$python" -m relaybox --headless --config "$work/relaybox.toml" 2>"$work/headless.err" &
headless=$!
trap 'kill $headless 2>/dev/null || true; cleanup' EXIT
"$python" - "$port" <<'EOF2'
import smtplib, sys, time
port = int(sys.argv[1])
for _ in range(100):
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail("history@office.example", ["old@held.example"],
                       "From: history@office.example\r\nSubject: Before the UI\r\n\r\nHi.\r\n")
        break
    except OSError:
        time.sleep(0.1)
EOF2
tmux_ new-session -d -s "$session" -x "$width" -y "$height" \
    "cd '$here' && '$python' -m relaybox --config '$work/relaybox.toml'; echo \"exit status \$?\"; sleep 5"
wait_for "attached to pid"
keys 4; wait_for "from=<history@office.example>"; shot 30-log-attached-history 0.5
keys q; wait_for "keeps running"; keys y; wait_for "exit status"
kill "$headless"; wait "$headless" || true
echo "walkthrough: screens in $out"
