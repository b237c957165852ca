#!/usr/bin/env bash
# Citation lint: fails when a source file or document cites a document that is not in
# the repository — design notes ("DESIGN §n"), reference notes ("reference §n"), the
# vendor notes ("Q1".."Q19"), issue numbers ("issue 5"), files under shared/guide or
# shared/reference, or any *.md file the repository does not hold. The decisions those
# documents held live in README sections and package docs (the vendor's silences in
# provider/doc.go and README "Where the vendor documentation is silent"): cite those.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t files < <(git ls-files --cached --others --exclude-standard \
  '*.go' '*.md' '*.sh' '*.yml' '*.yaml' '*.json' 'Dockerfile*' | grep -vx '.ci/citations.sh' | sort -u)
status=0

# Citations of documents outside the repository.
if grep -nHE '(DESIGN|ANCHORS)( §|\.md)|reference §|\bQ[0-9]{1,2}\b|\b[Ii]ssues? #?[0-9]+|shared/(guide|reference)/' "${files[@]}"; then
  echo "citations: the lines above cite documents that are not in the repository; point them at a README section or a package doc" >&2
  status=1
fi

# Every *.md a file names must be in the repository (by its file name).
declare -A have=()
while IFS= read -r f; do have["$(basename "$f")"]=1; done < <(git ls-files --cached --others --exclude-standard '*.md')
while IFS=: read -r file line name; do
  if [[ -z "${have[$name]:-}" ]]; then
    echo "$file:$line: cites $name, which is not in the repository" >&2
    status=1
  fi
done < <(grep -noHE '[A-Za-z0-9_-]+\.md\b' "${files[@]}" | awk -F: '{print $1 ":" $2 ":" $3}' | sort -u)

exit $status
