#!/usr/bin/env bash
# Rewrites constraints.txt: the exact versions a fresh `pip install -e ".[test,hf,mutation,plan]"`
# resolves to, which the test suite (.ci/run), docs/RESULTS.md and the mutation run
# (tools/mutation.py) are then produced with.
#
#   bash tools/refresh_constraints.sh            # resolve anew (newest releases allowed)
#   bash tools/refresh_constraints.sh --keep     # resolve within the current constraints.txt
#
# Run it from the repository root; it builds a throwaway venv under /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d /tmp/focal-constraints.XXXXXX)
python -m venv "$venv"
keep=()
if [ "${1:-}" = "--keep" ] && [ -f constraints.txt ]; then keep=(-c constraints.txt); fi
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -e ".[test,hf,mutation,plan]" "${keep[@]}"
{
  echo "# Exact versions the tests and docs/RESULTS.md were produced with (Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'))."
  echo "# Used by .ci/run and the README: pip install -e \".[test,hf,plan]\" -c constraints.txt"
  echo "# Refresh: bash tools/refresh_constraints.sh"
  "$venv/bin/pip" freeze --exclude-editable | grep -v '^-e ' | sort -f
} > constraints.txt
rm -rf "$venv"
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) packages)"
