#!/usr/bin/env bash
# Cross-builds opmas-edge for OpenWRT: static musl executables, size-optimised
# (profile release-edge), stripped, checked against the flash budgets.
#
# usage: scripts/build-openwrt.sh [options]
#   --target TRIPLE     build only this target (repeatable; default: all five)
#   --features LIST     cargo features of opmas-edge, e.g. tls (TLS budget applies)
#   --panic-messages    keep panic messages (panic=abort instead of immediate-abort;
#                       about 340 KB larger on mips, for debugging a crash)
#   --std build|prebuilt
#                       build: std is rebuilt with the pinned nightly (-Zbuild-std)
#                         for every target (default; the smallest binaries)
#                       prebuilt: tier-2 targets use stable + `rustup target add`
#                         (MIPS is tier 3 and always needs build)
#   --no-budget         report sizes, do not fail past the budgets
#   --setup             install the pinned toolchain, zig and cargo-zigbuild first
#   -h, --help
#
# Artefacts: dist/<target>/opmas-edge (dist/<target>+<features>/ with --features),
# each with a BUILDINFO file. Exit status 1 when a build fails or a binary is
# over its budget, 2 when a tool is missing (the message says how to get it).
#
# Linker: zig (`cargo zigbuild`). Rust ships no musl libc.a or crt objects for
# the tier-3 MIPS targets; zig carries musl for every target and builds it on
# demand, and is a C cross-compiler for crates with C parts (ring for TLS).
# rust-lld alone could link only the tier-2 targets.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- pinned tools ------------------------------------------------------------
# rustc 1.97.0-nightly (e50aa6fba 2026-05-19) is the dist of 2026-05-20.
NIGHTLY="${OPMAS_NIGHTLY:-nightly-2026-05-20}"
STABLE="${OPMAS_STABLE:-stable}"
ZIG_VERSION="0.17.1"        # PyPI package ziglang
ZIGBUILD_VERSION="0.24.1"   # crates.io package cargo-zigbuild

ALL_TARGETS=(
  mips-unknown-linux-musl          # OpenWRT mips_24kc (ath79), big-endian
  mipsel-unknown-linux-musl        # mipsel_24kc (ramips/mt7621)
  armv7-unknown-linux-musleabihf   # arm_cortex-a7_neon-vfpv4
  aarch64-unknown-linux-musl       # aarch64_cortex-a53
  x86_64-unknown-linux-musl        # x86_64
)

# Budgets in bytes (1 MB = 1,000,000 bytes). Empty: reported, not checked.
budget() { # TARGET TLS(0|1)
  case "$1:$2" in
    mips-*:0 | mipsel-*:0) echo 1200000 ;;
    mips-*:1 | mipsel-*:1) echo 2000000 ;;
    armv7-*:0 | aarch64-*:0) echo 1000000 ;;
    *) echo "" ;;
  esac
}

die() { echo "build-openwrt: $*" >&2; exit 1; }
missing() { echo "build-openwrt: $1 is missing; install it with:" >&2; shift; printf '    %s\n' "$@" >&2; exit 2; }

# --- arguments -----------------------------------------------------------------
targets=() features="" panic_messages=0 std_mode=build check_budget=1 setup=0
while [ $# -gt 0 ]; do
  case "$1" in
    --target) [ $# -ge 2 ] || die "--target needs a value"; targets+=("$2"); shift 2 ;;
    --target=*) targets+=("${1#*=}"); shift ;;
    --features) [ $# -ge 2 ] || die "--features needs a value"; features="$2"; shift 2 ;;
    --features=*) features="${1#*=}"; shift ;;
    --panic-messages) panic_messages=1; shift ;;
    --std) [ $# -ge 2 ] || die "--std needs build or prebuilt"; std_mode="$2"; shift 2 ;;
    --std=*) std_mode="${1#*=}"; shift ;;
    --no-budget) check_budget=0; shift ;;
    --setup) setup=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
case "$std_mode" in build | prebuilt) ;; *) die "--std must be build or prebuilt" ;; esac
for t in "${targets[@]}"; do
  case " ${ALL_TARGETS[*]} " in *" $t "*) ;; *) die "unknown target $t; known: ${ALL_TARGETS[*]}" ;; esac
done
features="$(echo "$features" | tr -s ', ' '\n' | sed '/^$/d' | sort -u | paste -sd, -)"
tls=0
case ",$features," in *,tls,*) tls=1 ;; esac
case ",$features," in *,fault-injection,*) die "fault-injection is for the tests; a router build never carries it" ;; esac

needs_nightly() { [ "$std_mode" = build ] || case "$1" in mips*) true ;; *) false ;; esac; }
any_nightly=0 any_stable=0
for t in "${targets[@]}"; do if needs_nightly "$t"; then any_nightly=1; else any_stable=1; fi; done

# --- tools -------------------------------------------------------------------
command -v rustup >/dev/null || missing rustup "curl https://sh.rustup.rs -sSf | sh -s -- -y --profile minimal"
zig_ok() { command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1; }
zigbuild_ok() { cargo-zigbuild -V 2>/dev/null | grep -q "$ZIGBUILD_VERSION"; }
if [ "$setup" = 1 ]; then
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src,llvm-tools
  if [ "$any_stable" = 1 ]; then
    rustup toolchain install "$STABLE" --profile minimal
    for t in "${targets[@]}"; do needs_nightly "$t" || rustup target add --toolchain "$STABLE" "$t"; done
  fi
  zig_ok || python3 -m pip install --quiet "ziglang==$ZIG_VERSION" ||
    python3 -m pip install --quiet --break-system-packages "ziglang==$ZIG_VERSION"
  zigbuild_ok || cargo install --quiet --locked cargo-zigbuild --version "$ZIGBUILD_VERSION"
fi
rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1 ||
  missing "toolchain $NIGHTLY" "rustup toolchain install $NIGHTLY --profile minimal --component rust-src,llvm-tools"
sysroot="$(rustup run "$NIGHTLY" rustc --print sysroot)"
host="$(rustup run "$NIGHTLY" rustc -vV | sed -n 's/^host: //p')"
strip_tool="$sysroot/lib/rustlib/$host/bin/llvm-strip"
[ -x "$strip_tool" ] || missing "llvm-tools of $NIGHTLY" "rustup component add --toolchain $NIGHTLY llvm-tools"
if [ "$any_nightly" = 1 ] && [ ! -d "$sysroot/lib/rustlib/src/rust/library" ]; then
  missing "rust-src of $NIGHTLY" "rustup component add --toolchain $NIGHTLY rust-src"
fi
if [ "$any_stable" = 1 ]; then
  installed="$(rustup target list --installed --toolchain "$STABLE" 2>/dev/null || true)"
  for t in "${targets[@]}"; do
    needs_nightly "$t" || grep -qx "$t" <<< "$installed" ||
      missing "std for $t ($STABLE)" "rustup target add --toolchain $STABLE $t"
  done
fi
zig_ok || missing zig "python3 -m pip install ziglang==$ZIG_VERSION"
zigbuild_ok || missing "cargo-zigbuild $ZIGBUILD_VERSION" "cargo install --locked cargo-zigbuild --version $ZIGBUILD_VERSION"

# Target-specific flags go in CARGO_TARGET_<T>_RUSTFLAGS so that build
# scripts and proc macros (host code) are not affected. RUSTFLAGS would
# override them, so it must not be set.
if [ -n "${RUSTFLAGS:-}${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
  die "unset RUSTFLAGS/CARGO_ENCODED_RUSTFLAGS: they would replace the per-target flags"
fi

target_dir="${CARGO_TARGET_DIR:-target}"
version="$(cargo pkgid --locked -p opmas-edge | sed 's/.*[@#]//')"
git_rev="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
git_dirty=""
if git status --porcelain --untracked-files=no 2>/dev/null | grep -q .; then git_dirty="+dirty"; fi

rustflags_for() { # TARGET -> flags
  local t="$1" f=()
  # MIPS musl targets link dynamically by default; OpenWRT gets one static file.
  f+=(-C target-feature=+crt-static)
  # panic = abort never unwinds: no unwind tables, no .eh_frame_hdr.
  f+=(-C force-unwind-tables=no -C "link-arg=-Wl,--no-eh-frame-hdr")
  # The executable is static and not PIE, so PIC code only costs: on MIPS
  # every call goes through the GOT (about 12% of .text).
  f+=(-C relocation-model=static)
  if needs_nightly "$t"; then
    # zig links musl's own crt objects and libc.a (build-std has none).
    f+=(-C link-self-contained=no -A linker_messages)
    # No panic formatting or backtrace machinery (about 340 KB on mips).
    # A panic then ends the process with SIGILL/SIGTRAP and no message;
    # procd respawns it. --panic-messages keeps them.
    [ "$panic_messages" = 1 ] || f+=(-Z unstable-options -C panic=immediate-abort)
    # Thumb-2 code: about 28% smaller than ARM code; every Cortex-A runs it.
    case "$t" in armv7-*) f+=(-C target-feature=+thumb-mode) ;; esac
  fi
  echo "${f[*]}"
}

suffix=""
[ -z "$features" ] || suffix="+${features//,/+}"
rows=() failed=0
for t in "${targets[@]}"; do
  out="dist/$t$suffix"
  flags="$(rustflags_for "$t")"
  var="CARGO_TARGET_$(echo "$t" | tr 'a-z-' 'A-Z_')_RUSTFLAGS"
  cmd=(cargo)
  if needs_nightly "$t"; then
    cmd+=("+$NIGHTLY" zigbuild -Z "build-std=std,panic_abort")
    toolchain="$NIGHTLY (build-std)"
  else
    cmd+=("+$STABLE" zigbuild)
    toolchain="$STABLE (prebuilt std)"
  fi
  cmd+=(-p opmas-edge --bin opmas-edge --profile release-edge --target "$t" --locked)
  [ -z "$features" ] || cmd+=(--features "$features")
  echo "== $t${features:+ (features: $features)}: $toolchain"
  echo "   $var=\"$flags\" ${cmd[*]}"
  start=$SECONDS
  if ! env "$var=$flags" "${cmd[@]}"; then
    echo "build-openwrt: $t: build failed" >&2
    rows+=("$t|$features|-|-|$((SECONDS - start))|FAILED")
    failed=1
    continue
  fi
  secs=$((SECONDS - start))
  mkdir -p "$out"
  # llvm-strip also drops what the linker's --strip-all keeps (.pdr on MIPS: ~160 KB).
  "$strip_tool" --strip-all -o "$out/opmas-edge.tmp" "$target_dir/$t/release-edge/opmas-edge"
  chmod 0755 "$out/opmas-edge.tmp"
  mv "$out/opmas-edge.tmp" "$out/opmas-edge"
  bytes=$(stat -c %s "$out/opmas-edge")
  limit="$(budget "$t" "$tls")"
  verdict="ok"
  if [ -n "$limit" ] && [ "$bytes" -gt "$limit" ]; then
    verdict="OVER BUDGET by $((bytes - limit)) bytes"
    [ "$check_budget" = 0 ] || failed=1
  fi
  cat > "$out/BUILDINFO" <<EOF
package=opmas-edge
version=$version
target=$t
features=$features
source=$git_rev$git_dirty
toolchain=$(rustup run "${toolchain%% *}" rustc --version)
rustflags=$flags
bytes=$bytes
budget=${limit:-none}
build_seconds=$secs
EOF
  rows+=("$t|$features|$bytes|${limit:-none}|$secs|$verdict")
done

echo
echo "== opmas-edge $version sizes (budget: 1 MB = 1,000,000 bytes)"
printf '%-32s %-8s %10s %9s %10s %6s  %s\n' target features bytes KiB budget build verdict
for r in "${rows[@]}"; do
  IFS='|' read -r t f b l s v <<< "$r"
  kib="-"; [ "$b" = "-" ] || kib=$(awk -v b="$b" 'BEGIN { printf "%.1f", b / 1024 }')
  printf '%-32s %-8s %10s %9s %10s %5ss  %s\n' "$t" "${f:--}" "$b" "$kib" "$l" "$s" "$v"
done
[ "$failed" = 0 ] || { echo "build-openwrt: failed (see above)" >&2; exit 1; }
