#!/usr/bin/env bash
# Checks the house style (STYLE.md §6): the format of every C++ file of the project against
# .clang-format, and the names in src/ and apps/ (with the headers they include) against
# .clang-tidy's readability-identifier-naming rules. Exits 1 on any finding.
#
#   scripts/check_style.sh [BUILD_DIR]     BUILD_DIR holds compile_commands.json (default build/debug)
#
# STEADYPG_STYLE_SKIP=format and/or tidy (comma-separated) leaves out a step.
# To fix the format instead of checking it: scripts/check_style.sh --fix-format
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=build/debug
fix_format=0
for arg in "$@"; do
  case "$arg" in
    --fix-format) fix_format=1 ;;
    -*) echo "usage: scripts/check_style.sh [--fix-format] [BUILD_DIR]" >&2; exit 2 ;;
    *) build_dir=$arg ;;
  esac
done
skip=",${STEADYPG_STYLE_SKIP:-},"
jobs=${STEADYPG_JOBS:-2}

# The project's own C++ files (git knows them; a plain find when there is no checkout).
cxx_files() {
  local dirs=("$@")
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -- "${dirs[@]}" | grep -E '\.(cpp|hpp)$' || true
  else
    find "${dirs[@]}" -type f \( -name '*.cpp' -o -name '*.hpp' \) | sort
  fi
}

status=0

if [ "$fix_format" = 1 ]; then
  cxx_files src include apps tests bench examples | xargs clang-format -i
  echo "style: reformatted $(cxx_files src include apps tests bench examples | wc -l) files"
  exit 0
fi

if [[ "$skip" != *,format,* ]]; then
  files=$(cxx_files src include apps tests bench examples)
  if ! out=$(printf '%s\n' "$files" | xargs clang-format --dry-run --Werror 2>&1); then
    printf '%s\n' "$out" | grep -E '^[^ ].*: (error|warning):' | head -40 >&2 || true
    n=$(printf '%s\n' "$out" | grep -cE ': (error|warning):' || true)
    echo "style: clang-format: $n place(s) differ from .clang-format; fix with scripts/check_style.sh --fix-format" >&2
    status=1
  else
    echo "style: clang-format: $(printf '%s\n' "$files" | wc -l) files ok"
  fi
fi

if [[ "$skip" != *,tidy,* ]]; then
  if [ ! -f "$build_dir/compile_commands.json" ]; then
    echo "style: no $build_dir/compile_commands.json; configure first (cmake --preset debug)" >&2
    exit 1
  fi
  # Naming checks only (.clang-tidy), two files at a time, each bounded to 5 minutes. The
  # compiler's own warnings are the build's business (clang's differ from GCC's), so they are off.
  # clang-tidy 14 reports the invented parameter of a `{ expr } -> concept` requirement as
  # 'expr-type', with no location: that is not a name in our code.
  tidy_one='timeout 300 clang-tidy -p "$1" --quiet --extra-arg=-Wno-everything "$2" 2>/dev/null
            [ $? -ne 124 ] || echo "$PWD/$2:1:1: error: clang-tidy took more than 300 s"'
  tidy_out=$(cxx_files src apps | grep -E '\.cpp$' |
             xargs -P "$jobs" -I{} bash -c "$tidy_one" _ "$build_dir" {} || true)
  findings=$(printf '%s\n' "$tidy_out" | grep -E '^/.*: (error|warning): ' |
             sed "s|^$PWD/||" | sort -u || true)
  if [ -n "$findings" ]; then
    printf '%s\n' "$findings" >&2
    echo "style: clang-tidy: $(printf '%s\n' "$findings" | wc -l) finding(s): names that break .clang-tidy's rules," \
         "or files it could not parse" >&2
    status=1
  else
    echo "style: clang-tidy: names ok"
  fi
fi

exit "$status"
