#!/usr/bin/env bash
# Packages the binaries of scripts/build-openwrt.sh as OpenWRT .ipk files,
# without the OpenWRT SDK.
#
# usage: scripts/build-ipk.sh [options]
#   --target TRIPLE   package only this target (repeatable; default: every
#                     target built in dist/)
#   --features LIST   package the binaries built with these features
#   --arch NAME       OpenWRT architecture to write (one --target only), e.g.
#                     mips_74kc for the mips binary; default: the target's usual one
#   --release N       package release (default 1): Version is <cargo version>-N
#   --outer tar|ar    outer archive: tar = gzip'd tar, what OpenWRT's opkg reads
#                     (default); ar = the classic Debian-style archive, which
#                     OpenWRT's opkg refuses but other opkg builds read
#   -h, --help
#
# Output: dist/<target>[+<features>]/<package>_<version>_<arch>.ipk, next to
# the binary. The package is opmas-edge, or opmas-edge-tls for a binary built
# with the tls feature (it provides opmas-edge; opkg installs one of the two:
# remove one before installing the other, /etc/config/opmas stays). It
# holds /usr/sbin/opmas-edge, /etc/init.d/opmas and /etc/config/opmas (a
# conffile: upgrades keep the user's settings), with openwrt/ipk/postinst and
# prerm.
#
# An ipk is like a .deb: debian-binary ("2.0"), control.tar.gz and
# data.tar.gz. OpenWRT's opkg (opkg-lede, 17.01 to 24.10) reads the outer
# archive only as a gzip'd tar (libbb/unarchive.c pipes it through
# `gzip -d`), which is also what OpenWRT's own ipkg-build writes; an ar
# outer archive fails there. OpenWRT 25.x uses apk: build with openwrt/Makefile
# in its SDK.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "build-ipk: $*" >&2; exit 1; }

openwrt_arch() { # TARGET -> OpenWRT package architecture
  case "$1" in
    mips-unknown-linux-musl) echo mips_24kc ;;
    mipsel-unknown-linux-musl) echo mipsel_24kc ;;
    armv7-unknown-linux-musleabihf) echo arm_cortex-a7_neon-vfpv4 ;;
    aarch64-unknown-linux-musl) echo aarch64_cortex-a53 ;;
    x86_64-unknown-linux-musl) echo x86_64 ;;
    *) return 1 ;;
  esac
}

targets=() features="" arch_override="" release=1 outer=tar
while [ $# -gt 0 ]; do
  case "$1" in
    --target) [ $# -ge 2 ] || die "--target needs a value"; targets+=("$2"); shift 2 ;;
    --target=*) targets+=("${1#*=}"); shift ;;
    --features) [ $# -ge 2 ] || die "--features needs a value"; features="$2"; shift 2 ;;
    --features=*) features="${1#*=}"; shift ;;
    --arch) [ $# -ge 2 ] || die "--arch needs a value"; arch_override="$2"; shift 2 ;;
    --arch=*) arch_override="${1#*=}"; shift ;;
    --release) [ $# -ge 2 ] || die "--release needs a value"; release="$2"; shift 2 ;;
    --release=*) release="${1#*=}"; shift ;;
    --outer) [ $# -ge 2 ] || die "--outer needs tar or ar"; outer="$2"; shift 2 ;;
    --outer=*) outer="${1#*=}"; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case "$outer" in tar | ar) ;; *) die "--outer must be tar or ar" ;; esac
case "$release" in '' | *[!0-9]*) die "--release must be a number" ;; esac
features="$(echo "$features" | tr -s ', ' '\n' | sed '/^$/d' | sort -u | paste -sd, -)"
suffix=""
[ -z "$features" ] || suffix="+${features//,/+}"
if [ ${#targets[@]} -eq 0 ]; then
  for d in dist/*"$suffix"/opmas-edge; do
    [ -f "$d" ] || continue
    t="${d#dist/}"; t="${t%/opmas-edge}"; t="${t%"$suffix"}"
    case "$t" in *+*) continue ;; esac
    targets+=("$t")
  done
  [ ${#targets[@]} -gt 0 ] || die "no binaries in dist/*$suffix/; run scripts/build-openwrt.sh${features:+ --features $features} first"
fi
[ -z "$arch_override" ] || [ ${#targets[@]} -eq 1 ] || die "--arch needs exactly one --target"
tar --version 2>/dev/null | grep -q 'GNU tar' || die "GNU tar is needed (apt-get install tar)"
[ "$outer" = tar ] || command -v ar >/dev/null || die "ar is missing (apt-get install binutils)"

version="$(cargo pkgid --locked -p opmas-edge | sed 's/.*[@#]//')-$release"
# Reproducible archives: every timestamp is the last commit's.
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
license="$(sed -n 's/^license *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)"
url="$(sed -n 's/^repository *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)"
tarc() { # DIR FILES... -> gzip'd tar on stdout, root-owned, fixed times
  local dir="$1"; shift
  tar -C "$dir" --format=gnu --numeric-owner --owner=0 --group=0 \
    --mtime="@$epoch" --sort=name -cf - "$@" | gzip -9n
}

# Package name: opmas-edge, or opmas-edge-<feature>... for a variant.
package="opmas-edge${features:+-${features//,/-}}"
if [ -n "$features" ]; then
  relations="Provides: opmas-edge"
else
  relations="Conflicts: opmas-edge-tls"
fi

for t in "${targets[@]}"; do
  arch="${arch_override:-$(openwrt_arch "$t")}" || die "unknown target $t"
  dir="dist/$t$suffix"
  bin="$dir/opmas-edge"
  [ -f "$bin" ] || die "$bin is missing; run scripts/build-openwrt.sh --target $t${features:+ --features $features}"
  work="$(mktemp -d "dist/.ipk.XXXXXX")"
  trap 'rm -rf "$work"' EXIT

  # data: what lands on the router
  root="$work/data"
  install -d -m 0755 "$root/usr/sbin" "$root/etc/init.d" "$root/etc/config"
  install -m 0755 "$bin" "$root/usr/sbin/opmas-edge"
  install -m 0755 openwrt/files/opmas.init "$root/etc/init.d/opmas"
  # 0600: the file holds the device secret.
  install -m 0600 openwrt/files/opmas.config "$root/etc/config/opmas"
  tarc "$root" . > "$work/data.tar.gz"
  installed_size=$(gzip -dc "$work/data.tar.gz" | wc -c)

  # control: metadata and maintainer scripts
  ctl="$work/control"
  install -d -m 0755 "$ctl"
  cat > "$ctl/control" <<EOF
Package: $package
Version: $version
Depends: libc
$relations
Source: $url
SourceName: $package
License: $license
Section: net
SourceDateEpoch: $epoch
Architecture: $arch
Installed-Size: $installed_size
Description:  OPMAS router agent: reads the router's syslog, runs detection agents and
 reports findings and heartbeats to opmas-hub over authenticated MQTT.${features:+
 Features: $features.}
EOF
  echo "/etc/config/opmas" > "$ctl/conffiles"
  install -m 0755 openwrt/ipk/postinst "$ctl/postinst"
  install -m 0755 openwrt/ipk/prerm "$ctl/prerm"
  chmod 0644 "$ctl/control" "$ctl/conffiles"
  tarc "$ctl" . > "$work/control.tar.gz"

  echo "2.0" > "$work/debian-binary"
  touch -d "@$epoch" "$work/debian-binary" "$work/control.tar.gz" "$work/data.tar.gz"
  ipk="$dir/${package}_${version}_${arch}.ipk"
  rm -f "$dir"/opmas-edge*_*.ipk
  if [ "$outer" = tar ]; then
    # Same member order and names as OpenWRT's scripts/ipkg-build.
    tar -C "$work" --format=gnu --numeric-owner --owner=0 --group=0 --mtime="@$epoch" \
      -cf - ./debian-binary ./data.tar.gz ./control.tar.gz | gzip -9n > "$ipk"
  else
    (cd "$work" && ar -rcD "ipk" debian-binary control.tar.gz data.tar.gz) && mv "$work/ipk" "$ipk"
  fi
  rm -rf "$work"
  trap - EXIT
  printf '%-32s %-26s %9d bytes  %s\n' "$t" "$arch" "$(stat -c %s "$ipk")" "$ipk"
done
