#!/usr/bin/env bash
# Build tracedsync's C accelerator for one of the Debian tree's interpreters
# (../shared/tools/debian-python: CPython 3.14 and 3.15) with this machine's
# C compiler, into src/tracedsync/ beside the sources, so that the suite can
# run on the accelerator there too.  CI uses it: the tree itself has no C
# compiler, so the README's install builds pure Python in it.
#
#   bash scripts/accelerator-for-debian-python.sh build MINOR   # e.g. 3.14
#   bash scripts/accelerator-for-debian-python.sh remove MINOR
#
# `build` exits with status 3, building nothing, where this machine has no
# C compiler.  The tree's headers are used as they are, except its libc's:
# only its Python.h and pyconfig.h are put on the include path.
set -euo pipefail
cd "$(dirname "$0")/.."
action="$1" minor="$2"
root=${DEBIAN_PYTHON_ROOT:-/opt/debian-python}
debian_python=../shared/tools/debian-python
suffix=$("$debian_python" exec "python$minor" -c \
    'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
target="src/tracedsync/_speedups$suffix"

if [ "$action" = remove ]; then
    rm -f "$target"
    exit 0
fi

compiler=${CC:-$(command -v cc || command -v gcc || true)}
if [ -z "$compiler" ]; then
    echo "no C compiler on this machine: the accelerator is not built for $minor" >&2
    exit 3
fi
multiarch=$("$compiler" -print-multiarch 2>/dev/null || true)
multiarch=${multiarch:-$(uname -m)-linux-gnu}
overlay=$(mktemp -d)
trap 'rm -rf "$overlay"' EXIT
mkdir -p "$overlay/$multiarch"
ln -s "$root/usr/include/$multiarch/python$minor" "$overlay/$multiarch/python$minor"
"$compiler" -O2 -fPIC -shared -fwrapv -DNDEBUG -Wall \
    -I"$root/usr/include/python$minor" -I"$overlay" \
    -o "$target" src/tracedsync/_speedups.c src/tracedsync/_eventbuffers.c \
    src/tracedsync/_jsonlines.c
echo "built $target for the Debian tree's python$minor"
