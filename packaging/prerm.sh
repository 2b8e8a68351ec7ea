#!/bin/sh
# Stop the agent when the package goes (remove), not on upgrade ($1 =
# upgrade), where postinst restarts an agent that runs on the new binary.
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	deb-systemd-invoke stop porttrace-agent.service >/dev/null || true
fi
