package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/porttrace/porttrace/cmd/portbench/floor"
)

// floorReady is what portbench -floor prints once its program is attached.
const floorReady = "floor program attached"

// floorConditions are the floor porttrace is measured against: the bare
// program and the minimal streamer (cmd/portbench/floor), run by this
// binary itself.
func floorConditions() []condition {
	self, err := os.Executable()
	if err != nil {
		return nil
	}
	return []condition{
		{name: bareName, argv: []string{self, "-floor", "count"}, ready: floorReady, jsonStats: true},
		{name: streamName, argv: []string{self, "-floor", "stream"}, ready: floorReady, jsonStats: true},
	}
}

// runFloor runs one floor program until SIGINT or SIGTERM, then prints its
// counts as porttrace does (events, lost_events).
func runFloor(mode string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	events, lost, err := floor.Run(ctx, mode, func() { fmt.Fprintln(os.Stderr, floorReady) })
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(struct {
		Events uint64 `json:"events"`
		Lost   uint64 `json:"lost_events"`
	}{events, lost})
}
