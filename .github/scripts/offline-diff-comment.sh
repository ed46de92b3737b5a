#!/usr/bin/env bash
# CI: run the offline infrastructure diff of a pull request against its base branch and post it
# as ONE comment on the pull request, edited in place on every push (found by its marker).
# The report (stdout of `make diff-base`) goes into the comment; its progress (stderr) into the
# job's log, and into the comment only when the diff itself failed.
# Exits with the diff's own status: 0 nothing stateful replaced, 1 a stateful resource would be
# replaced or removed, 2 the diff could not be made.
#   env: BASE_REF (the base branch), PR_NUMBER, GH_TOKEN, GITHUB_REPOSITORY
set -uo pipefail
MARKER="<!-- aipp-offline-diff -->"
out=$(mktemp)
err=$(mktemp)
# stdout to $out; stderr both to the log, live, and to $err.
{ make --no-print-directory diff-base BASE="origin/$BASE_REF" 2>&1 >&3 3>&- | tee "$err" >&2; } 3>"$out"
status=${PIPESTATUS[0]}
cat "$out"

body=$(mktemp)
{
  echo "$MARKER"
  echo "### Offline infrastructure diff against \`$BASE_REF\`"
  case $status in
    0) echo "No stateful resource would be replaced or removed." ;;
    1) echo "**A stateful resource would be replaced or removed (listed first). Read it before merging.**" ;;
    *) echo "**\`make diff-base\` failed (exit $status): no diff. Its last words:**"
       echo
       echo '```'
       tail -n 20 "$err"
       echo '```' ;;
  esac
  echo
  if [[ -s $out ]]; then
    echo '```'
    # A comment holds at most 65,536 characters; the head of the diff lists replacements first.
    head -c 60000 "$out"
    echo '```'
  fi
} >"$body"

api="repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments"
existing=$(gh api --paginate "$api" --jq ".[] | select(.user.type == \"Bot\" and (.body | startswith(\"$MARKER\"))) | .id" | head -n 1)
if [[ -n $existing ]]; then
  gh api --method PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$existing" -F "body=@$body" >/dev/null \
    || echo "::warning::could not update the diff comment (a pull request from a fork has a read-only token)"
else
  gh api --method POST "$api" -F "body=@$body" >/dev/null \
    || echo "::warning::could not post the diff comment (a pull request from a fork has a read-only token)"
fi
exit $status
