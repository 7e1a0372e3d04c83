#!/bin/sh
# greet NAME...: prints a greeting for each NAME, worded as $GREET_CONFIG says.
set -eu
GREETING=Hello
PUNCTUATION=!
if [ -r "${GREET_CONFIG:-}" ]; then
  # shellcheck source=greet.conf
  . "$(cd "$(dirname "$GREET_CONFIG")" && pwd)/$(basename "$GREET_CONFIG")"
fi
for name in "$@"; do
  printf '%s, %s%s\n' "$GREETING" "$name" "$PUNCTUATION"
done
