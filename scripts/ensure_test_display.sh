#!/bin/sh
# The GUI tests open a real Tk window on a virtual X display: they need Xvfb, xdotool (real
# keystrokes) and a Python with Tk. This installs what is missing with apt-get (Debian/Ubuntu,
# as root or through password-less sudo) and does nothing when everything is there. Without a
# way to install, it says what to install and exits 0: the GUI tests then skip with that reason.
#
# Usage: scripts/ensure_test_display.sh [PYTHON]   (the interpreter the tests run on)
set -eu

python="${1:-python3}"
packages=""
command -v Xvfb >/dev/null 2>&1 || packages="$packages xvfb"
command -v xdotool >/dev/null 2>&1 || packages="$packages xdotool"
# Debian's own python3 ships Tk separately; another interpreter needs Tk built in.
"$python" -c "import tkinter" >/dev/null 2>&1 || packages="$packages python3-tk"

[ -z "$packages" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    as_root="sudo -n"
else
    echo "GUI tests: missing$packages; install them (apt-get install$packages) or the GUI" \
         "tests are skipped" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "GUI tests: missing$packages and no apt-get here; the GUI tests are skipped" >&2
    exit 0
fi

echo "GUI tests: installing$packages" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; an update is needed once.
$as_root apt-get update -qq
# shellcheck disable=SC2086 # one word per package
$as_root apt-get install -y -qq --no-install-recommends $packages >/dev/null
