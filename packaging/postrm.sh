#!/bin/sh
# Disable the agent when the package is removed, forget it when purged;
# nothing on upgrade.
set -e
if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
case "$1" in
remove) deb-systemd-helper disable porttrace-agent.service >/dev/null || true ;;
purge) deb-systemd-helper purge porttrace-agent.service >/dev/null || true ;;
esac
