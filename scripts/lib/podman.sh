# shellcheck shell=bash
# scripts/lib/podman.sh: podman for the shell suites, on a machine that may never have had it.
#
#   source scripts/lib/podman.sh
#   podman_install [PACKAGE...]   # podman and what it needs here, plus PACKAGE (apt-get)
#   podman_conf                   # CONTAINERS_CONF: deploy/offline/containers.conf unless set
#   podman_check_dns NETWORK NAME IMAGE
#                                 # a container on NETWORK resolves NAME, or fail at once
#
# Why each package (Debian 12, always --no-install-recommends, so nothing comes by chance):
#   podman runc       the engine, and the runtime containers.conf selects (crun rejects the
#                     hybrid cgroups of the CI machines)
#   netavark          the network stack. Without it apt satisfies podman's network dependency
#   aardvark-dns      with the CNI plugins and no DNS plugin, so containers in a compose
#                     network cannot resolve each other ("db": Name does not resolve)
#   iptables          what netavark drives for published ports and NAT (CNI would have
#                     pulled it in; netavark 1.4 does not depend on it)
#   catatonit         the pause process of pods' infra containers (`podman kube play`)
# They go in before podman's first use: podman picks its network backend then, and keeps CNI
# once CNI networks exist. containers.conf also names netavark, so a host where CNI was
# chosen earlier uses netavark for these suites all the same.

PODMAN_PACKAGES=(podman runc netavark aardvark-dns iptables catatonit)

# podman_install [PACKAGE...]: apt-get install what of PODMAN_PACKAGES and PACKAGE is missing
podman_install() {
	local missing=() p
	for p in "${PODMAN_PACKAGES[@]}" "$@"; do
		dpkg-query -W -f '${Status}' "$p" 2> /dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	[ "${#missing[@]}" -gt 0 ] || return 0
	local sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	printf '==> installing %s (apt-get)\n' "${missing[*]}"
	$sudo apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
}

# podman_conf: the suites' own podman settings (runc, ulimits, netavark), unless the caller
# chose a file; and no systemd timers for health checks (they run when called)
podman_conf() {
	local here
	here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
	export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/deploy/offline/containers.conf}"
	export DISABLE_HC_SYSTEMD=true
	local backend
	if ! backend="$(podman info --format '{{.Host.NetworkBackend}}' 2>&1)"; then
		printf >&2 'podman info failed (CONTAINERS_CONF=%s):\n%s\n' "$CONTAINERS_CONF" "$(tail -n 3 <<< "$backend")"
		return 1
	fi
	if [ "$backend" != netavark ]; then
		printf >&2 'podman uses the network backend "%s", not netavark: container names will not resolve.\n' "${backend:-unknown}"
		printf >&2 'Install netavark and aardvark-dns, and set [network] network_backend = "netavark" in %s.\n' "$CONTAINERS_CONF"
		return 1
	fi
}

# podman_check_dns NETWORK NAME IMAGE: run IMAGE's busybox nslookup on NETWORK for NAME (a
# container there). Fails at once, with the cure, instead of a health wait that times out.
podman_check_dns() {
	local network="$1" name="$2" image="$3" out
	if out="$(timeout 20 podman run --rm --network "$network" --entrypoint nslookup "$image" "$name" 2>&1)"; then
		return 0
	fi
	printf >&2 'DNS inside the compose network %s does not work: a container there cannot resolve "%s":\n%s\n' \
		"$network" "$name" "$(tail -n 3 <<< "$out" | sed 's/^/    /')"
	printf >&2 'podman needs netavark + aardvark-dns (apt-get install netavark aardvark-dns) before its first use; see docs/containers.md.\n'
	return 1
}
