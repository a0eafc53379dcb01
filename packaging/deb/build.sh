#!/usr/bin/env bash
# Builds the .deb packages of the collector (greenops) and the agent (greenops-agent) from the
# release binaries with dpkg-deb, into $CARGO_TARGET_DIR/deb (default target/deb). `make deb`
# builds the binaries first and runs this; packaging/deb/check.sh installs and tests the result.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$root/$target ;; esac
bin=$target/release
out=$target/deb

fail() { echo "packaging/deb/build.sh: $*" >&2; exit 1; }
command -v dpkg-deb >/dev/null || fail "dpkg-deb is missing (Debian package dpkg)"
if ! command -v objdump >/dev/null || ! command -v strip >/dev/null; then
    fail "objdump and strip are missing (Debian package binutils)"
fi
for b in greenops greenops-agent; do
    [ -x "$bin/$b" ] || fail "$bin/$b is missing: run \`make binaries\` (or \`make deb\`) first"
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")
[ -n "$version" ] || fail "no version in [workspace.package] of Cargo.toml"
"$bin/greenops" --version | grep -qx "greenops $version" \
    || fail "$bin/greenops --version is not $version: the binaries are stale, rebuild them"
"$bin/greenops-agent" --version | grep -qx "greenops-agent $version" \
    || fail "$bin/greenops-agent --version is not $version: the binaries are stale, rebuild them"
arch=$(dpkg --print-architecture)

# The newest glibc symbol version a binary needs: its libc6 dependency.
glibc_of() {
    local v
    v=$(objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
    [ -n "$v" ] || fail "cannot read the glibc version $1 needs (objdump, Debian package binutils)"
    echo "$v"
}
# Only the C library: anything else linked dynamically would be a missing dependency.
only_libc() {
    local extra
    extra=$(objdump -p "$1" | awk '/NEEDED/ {print $2}' | grep -Ev '^(libc|libm|libgcc_s|ld-linux-x86-64|ld-linux-aarch64)\.so' || true)
    [ -z "$extra" ] || fail "$1 links $extra: add the Debian packages to Depends in build.sh"
}

stage() { # name → a fresh staging directory
    local dir=$out/stage/$1
    rm -rf "$dir"
    mkdir -p "$dir/DEBIAN"
    echo "$dir"
}

finish() { # name description depends dir
    local name=$1 description=$2 depends=$3 dir=$4 size
    install -D -m 0644 "$here/copyright" "$dir/usr/share/doc/$name/copyright"
    for script in postinst prerm postrm; do
        install -m 0755 "$here/$name/$script" "$dir/DEBIAN/$script"
    done
    (cd "$dir" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
        | xargs -0 md5sum > DEBIAN/md5sums)
    size=$(du -sk --exclude=DEBIAN "$dir" | cut -f1)
    cat > "$dir/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: $arch
Maintainer: GreenOps maintainers <greenops@example.invalid>
Installed-Size: $size
Depends: $depends
Section: admin
Priority: optional
Homepage: https://example.invalid/greenops
Description: $description
CONTROL
    dpkg-deb --root-owner-group -Zxz --build "$dir" "$out/${name}_${version}_${arch}.deb" >/dev/null
    echo "$out/${name}_${version}_${arch}.deb"
}

mkdir -p "$out"
rm -f "$out"/*.deb

# The collector: binary, hardened unit, configuration (the documented defaults with the state
# directory of the package), documentation.
only_libc "$bin/greenops"
dir=$(stage greenops)
install -D -m 0755 "$bin/greenops" "$dir/usr/bin/greenops"
strip --strip-unneeded "$dir/usr/bin/greenops"   # as Debian ships binaries (no symbol table)
install -D -m 0644 "$root/collector/packaging/systemd/greenops.service" \
    "$dir/lib/systemd/system/greenops.service"
install -d -m 0755 "$dir/etc/greenops"
"$bin/greenops" default-config \
    | sed 's|^data_dir = .*|data_dir = "/var/lib/greenops"|' > "$dir/etc/greenops/greenops.toml"
grep -q '^data_dir = "/var/lib/greenops"$' "$dir/etc/greenops/greenops.toml" \
    || fail "default-config has no data_dir line to point at /var/lib/greenops"
chmod 0644 "$dir/etc/greenops/greenops.toml"   # 0640 root:greenops by statoverride (postinst)
echo /etc/greenops/greenops.toml > "$dir/DEBIAN/conffiles"
install -D -m 0644 "$root/README.md" "$dir/usr/share/doc/greenops/README.md"
install -D -m 0644 "$root/alerts/runbooks.md" "$dir/usr/share/doc/greenops/runbooks.md"
finish greenops "GreenOps collector: idle energy accounting of office PCs
 Receives heartbeats from the GreenOps agents, accounts idle time, energy, cost and CO2
 exactly, and serves Prometheus metrics, an admin page and API. Runs as the system service
 greenops (user greenops, state in /var/lib/greenops, configuration in /etc/greenops)." \
    "libc6 (>= $(glibc_of "$bin/greenops")), passwd" "$dir"

# The agent: binary, the system unit and the per-session user unit of agent/packaging.
only_libc "$bin/greenops-agent"
dir=$(stage greenops-agent)
install -D -m 0755 "$bin/greenops-agent" "$dir/usr/bin/greenops-agent"
strip --strip-unneeded "$dir/usr/bin/greenops-agent"
install -D -m 0644 "$root/agent/packaging/systemd/greenops-agent.service" \
    "$dir/lib/systemd/system/greenops-agent.service"
install -D -m 0644 "$root/agent/packaging/systemd/greenops-agent-user.service" \
    "$dir/usr/lib/systemd/user/greenops-agent-user.service"
install -D -m 0644 "$here/agent.toml.example" "$dir/usr/share/doc/greenops-agent/agent.toml.example"
finish greenops-agent "GreenOps agent: reports user idle time of this PC to the collector
 Sends a heartbeat every minute with the seconds since the last keyboard or mouse input,
 the session state, CPU and memory use to a GreenOps collector; spools on disk while the
 collector is unreachable. Runs as the system service greenops-agent, or per desktop session
 (greenops-agent-user)." \
    "libc6 (>= $(glibc_of "$bin/greenops-agent"))" "$dir"

rm -rf "$out/stage"
