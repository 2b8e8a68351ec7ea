#!/bin/sh
# The agent is not started on install: review /etc/default/porttrace, then
# systemctl enable --now porttrace-agent. On upgrade ($2 = the old
# version) an agent that runs is restarted on the new binary.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if [ "$1" = configure ] && [ -n "${2:-}" ]; then
		deb-systemd-invoke try-restart porttrace-agent.service || true
	fi
fi
