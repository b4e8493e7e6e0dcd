#!/bin/sh
# pin-release.sh: make a tree the trust root of a release. Run by the
# release workflow after GoReleaser published VERSION, on the commit that
# users then reference (the moving major tag):
#
#   pin-release.sh VERSION CHECKSUMS_TXT [REPO_DIR]
#
# writes checksums/VERSION.txt (a copy of the release's checksums.txt) and
# checksums/RELEASE (the version action.yml installs), and pins the GitLab
# template's GOPROXY_SETUP_VERSION and GOPROXY_SETUP_SHA256SUMS to them.
set -eu
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: pin-release.sh VERSION CHECKSUMS_TXT [REPO_DIR]" >&2
  exit 2
fi
version=$1 sums=$2 repo=${3:-.}
case $version in
  v[0-9]*) ;;
  *) echo "pin-release.sh: version '$version' is not vX.Y.Z" >&2; exit 2 ;;
esac
if ! grep -Eq '^[0-9a-f]{64}  ' "$sums"; then
  echo "pin-release.sh: $sums holds no 'SHA256  NAME' line: pass GoReleaser's checksums.txt" >&2
  exit 2
fi
template="$repo/examples/gitlab/goproxy-setup.gitlab-ci.yml"
mkdir -p "$repo/checksums"
cp "$sums" "$repo/checksums/$version.txt.tmp"
mv -f "$repo/checksums/$version.txt.tmp" "$repo/checksums/$version.txt"
printf '%s\n' "$version" > "$repo/checksums/RELEASE.tmp"
mv -f "$repo/checksums/RELEASE.tmp" "$repo/checksums/RELEASE"

awk -v version="$version" -v sums="$sums" '
  skip && /^      / { next }
  { skip = 0 }
  /^    GOPROXY_SETUP_VERSION: / { print "    GOPROXY_SETUP_VERSION: " version; next }
  /^    GOPROXY_SETUP_SHA256SUMS: / {
    print "    GOPROXY_SETUP_SHA256SUMS: |"
    while ((getline line < sums) > 0) if (line != "") print "      " line
    skip = 1
    next
  }
  { print }
' "$template" > "$template.tmp"
mv -f "$template.tmp" "$template"
echo "pinned $version: checksums/$version.txt, checksums/RELEASE, $template"
