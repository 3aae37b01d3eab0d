#!/usr/bin/env bash
# The `coord` Python module's suite, as a user gets the module: pip builds the abi3 wheel from
# ./bindings/python (maturin, the PEP 517 backend, in an isolated build environment), the
# wheel is installed into a fresh virtualenv, and the suite runs there against it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/build"
"$scratch/build/bin/pip" install -q --upgrade pip
echo "building the wheel (pip wheel ./bindings/python)"
"$scratch/build/bin/pip" wheel -q --no-deps -w "$scratch/wheels" ./bindings/python
wheel="$(ls "$scratch"/wheels/coord-*.whl)"
case "$wheel" in
*-abi3-*) echo "built $(basename "$wheel")" ;;
*)
    echo "not an abi3 wheel: $wheel" >&2
    exit 1
    ;;
esac

python3 -m venv "$scratch/fresh"
"$scratch/fresh/bin/pip" install -q "$wheel" -r bindings/python/tests/requirements.txt
# From outside the repository, so that `import coord` is the installed wheel.
cd "$scratch"
"$scratch/fresh/bin/python" -m pytest -q -p no:cacheprovider "$repo/bindings/python/tests"
