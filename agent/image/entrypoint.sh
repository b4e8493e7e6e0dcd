#!/bin/sh
# goproxy-setup entrypoint for self-hosted runner images: written by
# `goproxy-setup image` and copied by the repository's Dockerfile. It runs
# before the image's own entrypoint/command ("$@"). Threat model:
# docs/threat-model.md.
#
# 1. `goproxy-setup run` enrols (GOPROXY_SETUP_* variables, e.g. a step-ca
#    token), starts the agent and prints the variables to export (GOPROXY
#    first). It separates the agent from the job when it can: as root it runs
#    the agent as $GOPROXY_SETUP_AGENT_USER (no groups, no_new_privs, not
#    dumpable, key in a 0700 directory); with passwordless sudo likewise, but
#    the job can then use sudo too; with neither it runs unseparated and
#    warns (the policy can make that fatal). Any failure stops the container
#    here: nothing runs without the agent it expects.
# 2. Started as root (docker run --user 0, securityContext.runAsUser: 0), it
#    then drops to $GOPROXY_SETUP_EXEC_AS for the runner, so that jobs never
#    run as root.
# 3. It execs the image's original entrypoint and command.
set -eu

if [ "$#" -eq 0 ]; then
	echo "goproxy-setup-entrypoint: no command to run after the agent: give the runner's command" >&2
	exit 2
fi

# The agent serves only the user that uses it (and root): when the runner
# will run as $GOPROXY_SETUP_EXEC_AS, that user.
if [ -n "${GOPROXY_SETUP_EXEC_AS:-}" ] && [ -z "${GOPROXY_SETUP_JOB_USER:-}" ]; then
	export GOPROXY_SETUP_JOB_USER="$GOPROXY_SETUP_EXEC_AS"
fi

set -a # export every variable that `run` prints
eval "$(/usr/local/bin/goproxy-setup run --format shell)"
set +a

if [ "$(id -u)" = 0 ] && [ -n "${GOPROXY_SETUP_EXEC_AS:-}" ]; then
	user="$GOPROXY_SETUP_EXEC_AS"
	HOME="$(getent passwd "$user" | cut -d: -f6)" || HOME=/
	export HOME USER="$user" LOGNAME="$user"
	if command -v setpriv >/dev/null 2>&1; then
		exec setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups --no-new-privs -- "$@"
	elif command -v runuser >/dev/null 2>&1; then
		exec runuser -u "$user" -- "$@"
	fi
	echo "goproxy-setup-entrypoint: cannot drop to $user: neither setpriv nor runuser is installed" >&2
	exit 1
fi
exec "$@"
