#!/bin/sh
# Style checks CI runs (STYLE.md rules 12 and 22): every C file is formatted with the project's
# .clang-format, and no unsafe libc call (strcpy, strcat, sprintf, vsprintf, gets, atoi, atol)
# appears in the code. Prints each offending file or line; exits 1 when there is any.
set -u
cd "$(dirname "$0")/.."
status=0
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
if command -v clang-format >/dev/null 2>&1; then
    for f in $files; do
        if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
            echo "check-style: $f is not clang-formatted (run: clang-format -i $f)"
            status=1
        fi
    done
else
    echo "check-style: clang-format not installed, format check skipped"
fi
# shellcheck disable=SC2086
unsafe=$(grep -nE '(^|[^_a-zA-Z0-9])(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol)\(' $files)
if [ -n "$unsafe" ]; then
    echo "check-style: unsafe calls (STYLE.md rule 22):"
    echo "$unsafe"
    status=1
fi
[ $status -eq 0 ] && echo "check-style: ok"
exit $status
