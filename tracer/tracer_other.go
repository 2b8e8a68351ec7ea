//go:build !linux

package tracer

import (
	"context"

	"github.com/porttrace/porttrace/internal/event"
)

// probes holds nothing here: Open refuses, so no Tracer exists off Linux.
type probes struct{}

// Open returns ErrNotLinux.
func Open(Options) (*Tracer, error) { return nil, ErrNotLinux }

// Run returns ErrNotLinux.
func (t *Tracer) Run(context.Context, func(*event.Event)) error { return ErrNotLinux }

// Lost returns ErrNotLinux.
func (t *Tracer) Lost() (uint64, error) { return 0, ErrNotLinux }

// Close does nothing: nothing was opened.
func (t *Tracer) Close() error { return nil }

// BindOnDemand is false: no Tracer exists off Linux.
func (t *Tracer) BindOnDemand() bool { return false }

// WatchBind does nothing: no Tracer exists off Linux.
func (t *Tracer) WatchBind(bool) (bool, error) { return false, nil }
