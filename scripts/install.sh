#!/bin/sh
# install.sh: install a released goproxy-setup binary, verified against a
# SHA-256 sums file that the caller's own tree carries (the trust root), never
# against anything the download host says. Shared by action.yml and the GitLab
# template (which embeds this file verbatim; a test keeps the two equal).
#
#   install.sh VERSION SUMS_FILE BIN_DIR
#
# Environment:
#   GOPROXY_SETUP_RELEASES_URL  base URL of the releases; the asset is fetched
#                               from BASE/VERSION/ASSET (required)
#   GOPROXY_SETUP_CACHE_DIR     cache root; the verified archive is kept under
#                               goproxy-setup/VERSION/ARCH/ so a runner
#                               downloads each version once (optional)
#   GOPROXY_SETUP_OS, GOPROXY_SETUP_ARCH
#                               target platform, as GOOS/GOARCH or as GitHub's
#                               runner.os/runner.arch (default: uname)
#
# Exit codes: 0 installed (BIN_DIR/goproxy-setup); 2 bad input; 3 download
# failed (host unreachable or an HTTP error); 4 checksum mismatch (both sums
# are printed); 5 no release for this version or platform in SUMS_FILE.
# The caller falls back to a source build on 3 and 5, never on 4.
set -eu

say() { printf 'goproxy-setup install: %s\n' "$*" >&2; }

if [ $# -ne 3 ]; then
  say "usage: install.sh VERSION SUMS_FILE BIN_DIR"
  exit 2
fi
version=$1 sums=$2 bindir=$3
case $version in
  v[0-9]*) ;;
  *) say "version '$version' is not a release version (vX.Y.Z)"; exit 2 ;;
esac
base=${GOPROXY_SETUP_RELEASES_URL:-}
if [ -z "$base" ]; then
  say "GOPROXY_SETUP_RELEASES_URL is empty: set it to the releases' base URL"
  exit 2
fi
if [ ! -f "$sums" ]; then
  say "no sums file $sums: $version has no verified release in this tree"
  exit 5
fi

os=${GOPROXY_SETUP_OS:-$(uname -s)}
arch=${GOPROXY_SETUP_ARCH:-$(uname -m)}
case $os in
  Linux | linux) os=linux ;;
  macOS | Darwin | darwin) os=darwin ;;
  *) say "no release for OS '$os' (releases are for Linux and macOS: the agent needs a Unix system)"; exit 5 ;;
esac
case $arch in
  X64 | x86_64 | amd64) arch=amd64 ;;
  ARM64 | aarch64 | arm64) arch=arm64 ;;
  *) say "no release for architecture '$arch'"; exit 5 ;;
esac
ext=tar.gz exe=goproxy-setup
# The name GoReleaser gives the archive (.goreleaser.yaml, archives).
asset="goproxy-setup_${version#v}_${os}_${arch}.${ext}"

want=$(awk -v a="$asset" '$2 == a || $2 == "*" a { print $1; exit }' "$sums")
case $want in
  [0-9a-f][0-9a-f][0-9a-f][0-9a-f]*) ;;
  *) say "$sums lists no sum for $asset: no $os/$arch release of $version"; exit 5 ;;
esac

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | awk '{ print $1 }'
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | awk '{ print $1 }'
  else openssl dgst -sha256 -r "$1" | awk '{ print $1 }'
  fi
}

fetch() { # URL FILE
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 2 --connect-timeout 10 --max-time 300 -o "$2" "$1"
  elif wget --help 2>&1 | grep -q BusyBox; then
    # BusyBox's wget (Alpine; images without curl): one try, bounded by
    # timeout(1), since the BusyBox 1.35 of Debian bookworm crashes on -T.
    if command -v timeout >/dev/null 2>&1; then timeout 300 wget -q -O "$2" "$1"; else wget -q -O "$2" "$1"; fi
  else
    wget -q -T 10 -t 3 -O "$2" "$1"
  fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

archive=""
cachedir=""
if [ -n "${GOPROXY_SETUP_CACHE_DIR:-}" ]; then
  cachedir="$GOPROXY_SETUP_CACHE_DIR/goproxy-setup/${version#v}/$arch"
  if [ -f "$cachedir/$asset" ]; then
    got=$(sha256 "$cachedir/$asset")
    if [ "$got" = "$want" ]; then
      archive="$cachedir/$asset"
      say "$version $os/$arch from the tool cache $cachedir (sha256 $got verified)"
    else
      say "cached $cachedir/$asset has sha256 $got, want $want: discarding it"
      rm -f "$cachedir/$asset"
    fi
  fi
fi

if [ -z "$archive" ]; then
  url="${base%/}/$version/$asset"
  say "downloading $url"
  if ! fetch "$url" "$work/$asset"; then
    say "download of $url failed"
    exit 3
  fi
  got=$(sha256 "$work/$asset")
  if [ "$got" != "$want" ]; then
    say "checksum mismatch for $asset: got sha256 $got, want $want (from $sums): the download is not the released file"
    exit 4
  fi
  say "$asset sha256 $got verified against $sums"
  archive="$work/$asset"
  if [ -n "$cachedir" ] && mkdir -p "$cachedir" 2>/dev/null; then
    # Atomic: a concurrent job sees the whole archive or none.
    if cp "$archive" "$cachedir/.$asset.$$" 2>/dev/null && mv -f "$cachedir/.$asset.$$" "$cachedir/$asset"; then
      say "cached in $cachedir"
    else
      rm -f "$cachedir/.$asset.$$"
      say "could not write the tool cache $cachedir: continuing without it"
    fi
  fi
fi

mkdir -p "$work/x" "$bindir"
tar -xzf "$archive" -C "$work/x" "$exe"
chmod 755 "$work/x/$exe"
mv -f "$work/x/$exe" "$bindir/$exe"
say "installed $bindir/$exe ($version, $os/$arch)"
