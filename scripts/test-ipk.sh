#!/usr/bin/env bash
# Checks the .ipk files that scripts/build-ipk.sh wrote, as opkg and a router
# would see them:
#   - the archive: outer format (gzip'd tar or ar), debian-binary, control
#     fields, conffiles, file list, modes and owners;
#   - the binary: a static ELF executable for the right machine (ELF header:
#     class, byte order, e_machine, no PT_INTERP; MIPS soft-float, ARM EABI5
#     hard-float), the same bytes as dist/<target>/opmas-edge;
#   - it runs (qemu-user for foreign targets): --version names version,
#     target and features; the default config is refused until the hub is
#     set; the default config with every option uncommented is accepted;
#     mqtts:// is refused without the tls feature and, with it, accepted with
#     a CA file;
#   - the init script (procd calls stubbed) starts nothing before enrolment
#     and the right command after; postinst/prerm do nothing under
#     $IPKG_INSTROOT and enable/restart/stop/disable otherwise;
#   - shellcheck on the init script, postinst, prerm and these scripts;
#   - the default /etc/config/opmas lists every agent parameter of
#     config/agents/*.yaml with its default.
# Ends with a size report and "N passed, M failed".
#
# usage: scripts/test-ipk.sh [IPK...]     (default: dist/*/opmas-edge*_*.ipk)
# needs: tar, gzip, binutils (ar, readelf), file, shellcheck, openssl,
#        qemu-user-static
set -euo pipefail
cd "$(dirname "$0")/.."

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "  ok    $*"; }
bad() { fail=$((fail + 1)); echo "  FAIL  $*"; }
check() { # DESCRIPTION COMMAND... : ok when the command succeeds
  local what="$1"; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

for tool in tar gzip ar readelf file shellcheck openssl; do
  command -v "$tool" >/dev/null ||
    { echo "test-ipk: $tool is missing: apt-get install -y tar gzip binutils file shellcheck openssl qemu-user-static" >&2; exit 1; }
done

if [ $# -gt 0 ]; then ipks=("$@"); else
  ipks=()
  for f in dist/*/opmas-edge*_*.ipk; do [ -f "$f" ] && ipks+=("$f"); done
fi
[ ${#ipks[@]} -gt 0 ] || { echo "test-ipk: no dist/*/opmas-edge*_*.ipk; run scripts/build-openwrt.sh and scripts/build-ipk.sh" >&2; exit 1; }

cargo_version="$(cargo pkgid --locked -p opmas-edge | sed 's/.*[@#]//')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- ELF header ------------------------------------------------------------
# uint FILE OFFSET LENGTH BIG_ENDIAN(0|1): unsigned integer at OFFSET
uint() {
  local -a b
  read -r -a b <<< "$(od -An -v -t u1 -j "$2" -N "$3" "$1" | tr '\n' ' ')"
  local v=0 i
  if [ "$4" = 1 ]; then
    for ((i = 0; i < ${#b[@]}; i++)); do v=$((v * 256 + b[i])); done
  else
    for ((i = ${#b[@]} - 1; i >= 0; i--)); do v=$((v * 256 + b[i])); done
  fi
  echo "$v"
}

# Expected ELF identity per target: class(1=32,2=64) data(1=LE,2=BE) e_machine
elf_expect() {
  case "$1" in
    mips-*) echo "1 2 8" ;;
    mipsel-*) echo "1 1 8" ;;
    armv7-*) echo "1 1 40" ;;
    aarch64-*) echo "2 1 183" ;;
    x86_64-*) echo "2 1 62" ;;
  esac
}
arch_ok() { # TARGET ARCH: the OpenWRT architecture fits the binary
  case "$1:$2" in
    mips-*:mips_*) case "$2" in mipsel_* | mips64*) return 1 ;; esac ;;
    mipsel-*:mipsel_* | armv7-*:arm_cortex-a* | aarch64-*:aarch64_* | x86_64-*:x86_64) ;;
    *) return 1 ;;
  esac
}
qemu_for() {
  case "$1" in
    mips-*) echo qemu-mips-static ;;
    mipsel-*) echo qemu-mipsel-static ;;
    armv7-*) echo qemu-arm-static ;;
    aarch64-*) echo qemu-aarch64-static ;;
    x86_64-*) [ "$(uname -m)" = x86_64 ] || echo qemu-x86_64-static ;;
  esac
}

check_elf() { # TARGET FILE
  local t="$1" f="$2" magic class data machine be type phoff phentsize phnum i ptype interp=0 flags
  magic="$(od -An -t x1 -N 4 "$f" | tr -d ' \n')"
  [ "$magic" = 7f454c46 ] || { bad "$t: binary is not ELF"; return; }
  class=$(uint "$f" 4 1 0) data=$(uint "$f" 5 1 0)
  be=0; [ "$data" = 2 ] && be=1
  type=$(uint "$f" 16 2 $be) machine=$(uint "$f" 18 2 $be)
  read -r want_class want_data want_machine <<< "$(elf_expect "$t")"
  check "$t: ELF class $class, byte order $data, e_machine $machine (want $want_class $want_data $want_machine)" \
    test "$class $data $machine" = "$want_class $want_data $want_machine"
  check "$t: ELF type EXEC (2) or static-pie DYN (3): $type" test "$type" = 2 -o "$type" = 3
  if [ "$class" = 1 ]; then
    phoff=$(uint "$f" 28 4 $be) phentsize=$(uint "$f" 42 2 $be) phnum=$(uint "$f" 44 2 $be) flags=$(uint "$f" 36 4 $be)
  else
    phoff=$(uint "$f" 32 8 $be) phentsize=$(uint "$f" 54 2 $be) phnum=$(uint "$f" 56 2 $be) flags=$(uint "$f" 48 4 $be)
  fi
  for ((i = 0; i < phnum; i++)); do
    ptype=$(uint "$f" $((phoff + i * phentsize)) 4 $be)
    [ "$ptype" != 3 ] || interp=1
  done
  check "$t: statically linked (no PT_INTERP among $phnum program headers)" test "$interp" = 0
  case "$t" in
    mips*)
      # mips32r2 (EF_MIPS_ARCH 0x70000000), soft float: the 24Kc has no FPU.
      check "$t: MIPS32r2 code" test $((flags & 0xf0000000)) = $((0x70000000))
      check "$t: soft-float ABI" grep -q 'FP ABI: *Soft float' <<< "$(readelf -A "$f" 2>/dev/null)" ;;
    armv7*)
      # EABI version 5, hard-float calling convention (EF_ARM_ABI_FLOAT_HARD).
      check "$t: ARM EABI5 hard-float" test $((flags & 0xff000000)) = $((0x05000000)) -a $((flags & 0x400)) = $((0x400)) ;;
  esac
  echo "        file: $(file -b "$f")"
}

# --- archive -----------------------------------------------------------------
# unpack IPK DIR: outer archive into DIR, prints its format
unpack() {
  local ipk dir="$2"
  ipk="$(realpath "$1")"
  mkdir -p "$dir"
  if [ "$(head -c 7 "$ipk" | tr -d '\0')" = '!<arch>' ]; then
    if (cd "$dir" && ar x "$ipk"); then echo ar; else echo "broken ar"; fi
  elif [ "$(od -An -t x1 -N 2 "$ipk" | tr -d ' \n')" = 1f8b ]; then
    if tar -xzf "$ipk" -C "$dir"; then echo tar.gz; else echo "broken tar.gz"; fi
  else
    echo unknown
  fi
}
members() { # IPK: outer member names, sorted, without ./
  if [ "$(head -c 7 "$1" | tr -d '\0')" = '!<arch>' ]; then ar t "$1"; else tar -tzf "$1"; fi | sed 's|^\./||' | sort | paste -sd' ' -
}
field() { sed -n "s/^$1: *//p" "$2"; }
# listing TARBALL: "mode owner name" per entry
listing() { tar -tvzf "$1" | awk '{ print $1, $2, $NF }'; }

# The init script under stubs for procd, uci and logger: prints the calls.
# shellcheck disable=SC2016 # awk's own $ fields
uci_awk='
$1 == "config" { name = $3; gsub(/\047|"/, "", name); insec = (name == s); next }
insec && $1 == "option" && $2 == o {
  v = $0; sub(/^[ \t]*option[ \t]+[^ \t]+[ \t]*/, "", v); gsub(/^\047|\047$/, "", v); print v; exit }'
run_init() { # INIT CONFIG_FILE
  UCI_FILE="$2" UCI_AWK="$uci_awk" sh -c '
    logger() { echo "logger $*"; }
    procd_open_instance() { echo "procd_open_instance"; }
    procd_set_param() { echo "procd_set_param $*"; }
    procd_close_instance() { echo "procd_close_instance"; }
    procd_add_reload_trigger() { echo "procd_add_reload_trigger $*"; }
    config_load() { :; }
    config_get() { eval "$1=\$(awk -v s=\"\$2\" -v o=\"\$3\" \"\$UCI_AWK\" \"\$UCI_FILE\")"; }
    . "$1"
    start_service
    service_triggers' sh "$1"
}

# A copy of the default config with every option uncommented (but the
# mqtts:// ones) and the hub on a closed loopback port, so the agent never
# leaves this machine. With a CA file: an mqtts:// url and ca_file only.
filled_config() { # DEFAULT OUT [CA_FILE]
  if [ -z "${3:-}" ]; then
    sed -e '/#option \(ca_file\|cert_file\|key_file\|tls_server_name\) /!s/^\([[:space:]]*\)#option /\1option /' \
      -e "s|^\([[:space:]]*option url \).*|\1'mqtt://127.0.0.1:9'|" "$1" > "$2"
  else
    sed -e 's/^\([[:space:]]*\)#option \(url\|device_id\|secret\|ca_file\) /\1option \2 /' \
      -e "s|^\([[:space:]]*option url \).*|\1'mqtts://127.0.0.1:9'|" \
      -e "s|^\([[:space:]]*option ca_file \).*|\1'$3'|" "$1" > "$2"
  fi
}
# A CA certificate for the mqtts:// checks (the agent only loads it).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=opmas test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null

declare -A report_bin report_ipk report_budget report_secs
shellchecked=0
for ipk in "${ipks[@]}"; do
  dir="$(dirname "$ipk")"
  variant="$(basename "$dir")"
  t="${variant%%+*}"
  features="" package=opmas-edge
  case "$variant" in *+*) features="${variant#*+}"; features="${features//+/,}"; package="opmas-edge-${features//,/-}" ;; esac
  echo "== $ipk"
  if [ -z "$(elf_expect "$t")" ]; then bad "$ipk: cannot tell the target from $dir"; continue; fi
  u="$work/$variant"
  rm -rf "$u"; mkdir -p "$u/outer" "$u/control" "$u/data"

  fmt="$(unpack "$ipk" "$u/outer")"
  check "outer archive is a gzip'd tar (what OpenWRT's opkg reads; got $fmt)" test "$fmt" = tar.gz
  check "members: debian-binary control.tar.gz data.tar.gz" \
    test "$(members "$ipk")" = "control.tar.gz data.tar.gz debian-binary"
  check "debian-binary is 2.0" test "$(cat "$u/outer/debian-binary" 2>/dev/null)" = "2.0"
  if ! tar -xzf "$u/outer/control.tar.gz" -C "$u/control" || ! tar -xzf "$u/outer/data.tar.gz" -C "$u/data"; then
    bad "control.tar.gz and data.tar.gz unpack"
    continue
  fi

  c="$u/control/control"
  arch="$(field Architecture "$c")"
  check "Package: $package" test "$(field Package "$c")" = "$package"
  if [ -n "$features" ]; then
    check "Provides: opmas-edge" test "$(field Provides "$c")" = opmas-edge
  else
    check "Conflicts: opmas-edge-tls" test "$(field Conflicts "$c")" = opmas-edge-tls
  fi
  check "Version: $(field Version "$c") is $cargo_version-<release>" \
    grep -qx "$(printf '%s' "$cargo_version" | sed 's/\./\\./g')-[0-9][0-9]*" <<< "$(field Version "$c")"
  check "Architecture: $arch fits $t" arch_ok "$t" "$arch"
  check "Depends: libc only" test "$(field Depends "$c")" = libc
  check "Installed-Size is the unpacked data size" \
    test "$(field Installed-Size "$c")" = "$(gzip -dc "$u/outer/data.tar.gz" | wc -c)"
  check "Description is set" test -n "$(field Description "$c")"
  check "no field twice" test -z "$(grep -o '^[A-Za-z-]*:' "$c" | sort | uniq -d)"
  check "file name is <Package>_<Version>_<Architecture>.ipk" \
    test "$(basename "$ipk")" = "${package}_$(field Version "$c")_$arch.ipk"
  check "conffiles lists /etc/config/opmas only" test "$(cat "$u/control/conffiles" 2>/dev/null)" = /etc/config/opmas

  check "control.tar.gz: control, conffiles 0644; postinst, prerm 0755; root-owned" test \
    "$(listing "$u/outer/control.tar.gz" | grep -v ' \./$' | sort -k3)" = \
    "$(printf '%s\n' '-rw-r--r-- 0/0 ./conffiles' '-rw-r--r-- 0/0 ./control' \
      '-rwxr-xr-x 0/0 ./postinst' '-rwxr-xr-x 0/0 ./prerm')"
  check "data.tar.gz: binary and init script 0755, config 0600, directories 0755, root-owned" test \
    "$(listing "$u/outer/data.tar.gz" | sort -k3)" = \
    "$(printf '%s\n' 'drwxr-xr-x 0/0 ./' 'drwxr-xr-x 0/0 ./etc/' 'drwxr-xr-x 0/0 ./etc/config/' \
      '-rw------- 0/0 ./etc/config/opmas' 'drwxr-xr-x 0/0 ./etc/init.d/' \
      '-rwxr-xr-x 0/0 ./etc/init.d/opmas' 'drwxr-xr-x 0/0 ./usr/' 'drwxr-xr-x 0/0 ./usr/sbin/' \
      '-rwxr-xr-x 0/0 ./usr/sbin/opmas-edge')"
  bin="$u/data/usr/sbin/opmas-edge"
  check "the binary is dist/$variant/opmas-edge" cmp -s "$bin" "$dir/opmas-edge"
  check_elf "$t" "$bin"

  # --- it runs ---
  runner="$(qemu_for "$t")"
  run=("$bin")
  if [ -n "$runner" ]; then
    if command -v "$runner" >/dev/null; then run=("$runner" "$bin"); else
      bad "$runner is missing (apt-get install -y qemu-user-static)"; run=()
    fi
  fi
  if [ ${#run[@]} -gt 0 ]; then
    out="$(timeout 60 "${run[@]}" --version 2>&1 || true)"
    echo "        ${run[*]##*/} --version: $out"
    check "--version prints opmas-edge $cargo_version" grep -q "^opmas-edge $cargo_version\b" <<< "$out"
    check "--version names the target $t and features ${features:-none}" \
      grep -qF "($t; features: ${features:-none})" <<< "$out"
    set +e
    out="$(timeout 60 "${run[@]}" run --config "$u/data/etc/config/opmas" 2>&1)"; rc=$?
    set -e
    check "the default config is refused until the hub is set (exit $rc: $(tail -n1 <<< "$out"))" \
      grep -q 'missing option url' <<< "$out"
    filled_config "$u/data/etc/config/opmas" "$u/filled"
    set +e
    out="$(timeout 5 "${run[@]}" run --config "$u/filled" 2>&1)"; rc=$?
    set -e
    check "the default config with every option set is accepted (still running after 5 s)" test "$rc" = 124
    [ "$rc" = 124 ] || printf '        %s\n' "$(tail -n 3 <<< "$out")"
    filled_config "$u/data/etc/config/opmas" "$u/filled-tls" "$work/ca.pem"
    set +e
    out="$(timeout 5 "${run[@]}" run --config "$u/filled-tls" 2>&1)"; rc=$?
    set -e
    case ",$features," in
      *,tls,*)
        check "mqtts:// with ca_file is accepted (still running after 5 s)" test "$rc" = 124
        [ "$rc" = 124 ] || printf '        %s\n' "$(tail -n 3 <<< "$out")"
        sed -i '/option ca_file/d' "$u/filled-tls"
        set +e
        out="$(timeout 20 "${run[@]}" run --config "$u/filled-tls" 2>&1)"
        set -e
        check "mqtts:// without ca_file is refused, naming ca_file" grep -q 'needs option ca_file' <<< "$out" ;;
      *)
        check "mqtts:// is refused: built without TLS (exit $rc)" grep -q 'built without' <<< "$out" ;;
    esac
  fi

  # --- init script and package scripts ---
  init="$u/data/etc/init.d/opmas"
  check "init script: procd service (USE_PROCD=1, rc.common shebang)" \
    grep -q '^USE_PROCD=1' "$init"
  out="$(run_init "$init" "$u/data/etc/config/opmas")"
  check "init script: before enrolment it logs what to set and starts nothing" \
    test -n "$(grep '^logger .*opmas.hub.url' <<< "$out")" -a -z "$(grep procd_open_instance <<< "$out")"
  check "init script: reload trigger on config opmas" grep -qx 'procd_add_reload_trigger opmas' <<< "$out"
  out="$(run_init "$init" "$u/filled")"
  check "init script: enrolled, it runs opmas-edge run --config /etc/config/opmas" \
    grep -qx 'procd_set_param command /usr/sbin/opmas-edge run --config /etc/config/opmas' <<< "$out"
  check "init script: respawn with threshold, timeout and retry" \
    grep -qE '^procd_set_param respawn [0-9]+ [0-9]+ [0-9]+$' <<< "$out"
  check "init script: stdout and stderr to logd" \
    test "$(grep -cE '^procd_set_param (stdout|stderr) 1$' <<< "$out")" = 2

  for s in postinst prerm; do
    set +e
    trace="$(IPKG_INSTROOT="$u/root" sh -x "$u/control/$s" 2>&1)"; rc=$?
    set -e
    check "$s: does nothing under \$IPKG_INSTROOT" test "$rc" = 0 -a -z "$(grep 'init.d' <<< "$trace")"
  done
  # Outside an image, with /etc/init.d/opmas replaced by a recorder.
  # shellcheck disable=SC2016 # the fake's own $1
  printf '#!/bin/sh\necho "$1" >> "%s"\n[ "$1" != enabled ] || [ -z "$DISABLED" ]\n' "$u/calls" > "$u/fake-init"
  chmod +x "$u/fake-init"
  for s in postinst prerm; do sed "s|/etc/init.d/opmas|$u/fake-init|g" "$u/control/$s" > "$u/$s"; done
  calls() { rm -f "$u/calls"; env "$@" >/dev/null 2>&1; tr '\n' ' ' < "$u/calls" 2>/dev/null | sed 's/ $//'; }
  check "postinst, new install: enable, restart" \
    test "$(calls PKG_UPGRADE=0 sh "$u/postinst")" = "enable enabled restart"
  check "postinst, upgrade of an enabled service: restart only" \
    test "$(calls PKG_UPGRADE=1 sh "$u/postinst")" = "enabled restart"
  check "postinst, upgrade of a disabled service: stays stopped" \
    test "$(calls PKG_UPGRADE=1 DISABLED=1 sh "$u/postinst")" = "enabled"
  check "prerm, removal: stop, disable" test "$(calls PKG_UPGRADE=0 sh "$u/prerm")" = "stop disable"

  if [ "$shellchecked" = 0 ]; then
    check "shellcheck: init script, postinst, prerm" \
      shellcheck "$init" "$u/control/postinst" "$u/control/prerm"
    shellchecked=1
  fi

  # --- default config vs the agents' parameters ---
  if [ -d config/agents ]; then
    want="$(for y in config/agents/*.yaml; do
      a="$(basename "$y" .yaml)"
      sed -n 's/^\([a-z_0-9]*\): *\(.*\)$/\1 \2/p' "$y" |
        sed -e 's/^enabled true$/enabled 1/' -e 's/^enabled false$/enabled 0/' | sed "s/^/$a /"
    done | sort)"
    have="$(awk '$1 == "config" { agent = ($2 == "agent") ? $3 : ""; gsub(/\047/, "", agent); next }
      agent != "" && $1 == "#option" { v = $3; gsub(/\047/, "", v); print agent, $2, v }' \
      "$u/data/etc/config/opmas" | sort)"
    check "default config lists every agent parameter of config/agents/*.yaml with its default" \
      test "$want" = "$have"
    [ "$want" = "$have" ] || diff <(echo "$want") <(echo "$have") | sed 's/^/        /' || true
  fi

  bi="$dir/BUILDINFO"
  report_bin[$variant]=$(stat -c %s "$bin")
  report_ipk[$variant]=$(stat -c %s "$ipk")
  report_budget[$variant]="$(sed -n 's/^budget=//p' "$bi" 2>/dev/null || true)"
  report_secs[$variant]="$(sed -n 's/^build_seconds=//p' "$bi" 2>/dev/null || true)"
done

echo "== shellcheck: build and test scripts"
check "shellcheck scripts/build-openwrt.sh scripts/build-ipk.sh scripts/test-ipk.sh" \
  shellcheck scripts/build-openwrt.sh scripts/build-ipk.sh scripts/test-ipk.sh

echo
echo "== sizes (bytes; 1 MB = 1,000,000)"
printf '%-36s %10s %10s %10s %7s\n' variant binary ipk budget build
for v in $(printf '%s\n' "${!report_bin[@]}" | sort); do
  printf '%-36s %10s %10s %10s %6ss\n' "$v" "${report_bin[$v]}" "${report_ipk[$v]}" \
    "${report_budget[$v]:--}" "${report_secs[$v]:--}"
done
echo
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
