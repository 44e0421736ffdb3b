# Shared by the launch scripts: fail with one message naming every missing variable.
require() {
  local missing=()
  for v in "$@"; do [[ -n "${!v:-}" ]] || missing+=("$v"); done
  if (( ${#missing[@]} )); then
    echo "$(basename "$0"): missing variable(s): ${missing[*]} (see launch/README.md)" >&2
    exit 2
  fi
}
