package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// TestExhaust: in its own namespace of 10 ports with tcp_tw_reuse=0, 30
// attempts must connect 10 times and fail 20 times with EADDRNOTAVAIL, and
// the host's namespace must not see its listener.
func TestExhaust(t *testing.T) {
	testnet.RequireRoot(t)
	bin := filepath.Join(t.TempDir(), "churn")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--mode", "exhaust", "--ports", "40000-40009", "--count", "30", "--duration", "10s", "--json").Output()
	if err != nil {
		t.Fatalf("churn: %v", err)
	}
	var r struct {
		Attempts, Connected int
		Failures            map[string]int
		Rate                float64 `json:"connects_per_second"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if r.Attempts != 30 || r.Connected != 10 || r.Failures["EADDRNOTAVAIL"] != 20 || len(r.Failures) != 1 || r.Rate <= 0 {
		t.Errorf("%s: want 30 attempts, 10 connected, 20 EADDRNOTAVAIL", out)
	}
	if ss, _ := exec.Command("ss", "-tln", "sport = :8080").Output(); strings.Contains(string(ss), "127.0.0.1:8080") {
		t.Errorf("churn's listener is visible outside its namespace:\n%s", ss)
	}
}

func TestBadFlags(t *testing.T) {
	good := options{mode: "reset", threads: 1, duration: time.Second, spaces: 1}
	if err := good.check(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []func(*options){
		func(o *options) { o.mode = "bogus" },
		func(o *options) { o.threads = 0 },
		func(o *options) { o.duration = time.Hour },
		func(o *options) { o.ports = "80-90" },
		func(o *options) { o.ports = "50000-40000" },
	} {
		o := good
		bad(&o)
		if err := o.check(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
