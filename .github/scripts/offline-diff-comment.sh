#!/usr/bin/env bash
# CI: run the offline infrastructure diff of a pull request against its base branch and post it
# as ONE comment on the pull request, edited in place on every push (found by its marker).
# Exits with the diff's own status (non-zero: a stateful replacement would happen, or an error).
#   env: BASE_REF (the base branch), PR_NUMBER, GH_TOKEN, GITHUB_REPOSITORY
set -uo pipefail
MARKER="<!-- aipp-offline-diff -->"
out=$(mktemp)
make diff-base BASE="origin/$BASE_REF" >"$out" 2>&1
status=$?
cat "$out"

body=$(mktemp)
{
  echo "$MARKER"
  echo "### Offline infrastructure diff against \`$BASE_REF\`"
  if [[ $status -eq 0 ]]; then
    echo "No stateful resource would be replaced."
  else
    echo "**\`make diff-base\` exited $status: a stateful resource would be replaced, or the diff failed. Read it before merging.**"
  fi
  echo
  echo '```'
  # A comment holds at most 65,536 characters; the head of the diff lists replacements first.
  head -c 60000 "$out"
  echo '```'
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
