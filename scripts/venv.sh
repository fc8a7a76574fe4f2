# Sourced by run.sh and test.sh: create .venv and install raydesk into it when needed.
# The install is redone only when pyproject.toml changed since the last one.
ensure_venv() {
  local extras="$1"
  local stamp=".venv/.installed${extras:+-$extras}"
  if [ ! -x .venv/bin/python ]; then
    echo "raydesk: creating .venv (first run only)" >&2
    python3 -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "raydesk: installing dependencies into .venv (a minute or two the first time)" >&2
    .venv/bin/python -m pip install --quiet --upgrade pip >&2
    # The CPU build of torch first: otherwise sentence-transformers pulls GBs of CUDA.
    .venv/bin/python -m pip install --quiet "torch==2.13.0" >&2
    .venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}" >&2
    touch "$stamp"
  fi
}

# Install a Debian package with apt unless its binary is there already.
# ensure_debian_binary BINARY PACKAGE WHY [APT OPTIONS...]
ensure_debian_binary() {
  local binary="$1" package="$2" why="$3"
  shift 3
  if [ ! -x "$binary" ]; then
    echo "raydesk: installing Debian's $package $why" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" "$package" >&2
  fi
}

# The console and widget tests drive Debian's chromium (never a browser a test tool
# downloads). RAYDESK_CHROMIUM points at another binary.
ensure_chromium() {
  ensure_debian_binary "${RAYDESK_CHROMIUM:-/usr/bin/chromium}" chromium \
    "for the browser tests"
}

# The metrics test scrapes raydesk with a real Prometheus: Debian's package, whose binary
# the test starts itself on a free loopback port. Where systemd runs, the package also
# starts a service of its own on port 9090 that the tests do not need
# (systemctl disable --now prometheus). RAYDESK_PROMETHEUS points at another binary.
ensure_prometheus() {
  ensure_debian_binary "${RAYDESK_PROMETHEUS:-/usr/bin/prometheus}" prometheus \
    "for the metrics test" --no-install-recommends
}
