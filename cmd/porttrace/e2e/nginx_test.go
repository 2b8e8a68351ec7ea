package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/frame"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// The incident of the seed articles: nginx as a reverse proxy, opening a new
// upstream connection per request, runs its port space out.

const nginxConf = `worker_processes 2;
daemon off;
master_process on;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log error;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	upstream backend {
		# max_fails=0: keep trying a server whose connect() failed, as a
		# proxy with a single upstream does in practice.
		server %[2]s max_fails=0;
		%[3]s
	}
	server {
		listen 127.0.0.1:8080;
		location / {
			proxy_pass http://backend;
			%[4]s
		}
	}
}
`

// startNginx runs nginx from Debian in the namespace, with or without
// upstream keepalive, and returns its error log's path and worker pids.
func startNginx(t *testing.T, ns *testnet.Netns, upstream netip.AddrPort, keepalive bool) (string, []uint32) {
	t.Helper()
	bin := testnet.RequireTool(t, "nginx")
	dir := t.TempDir()
	up, loc := "", ""
	if keepalive {
		// keepalive_requests: nginx closes an upstream connection after
		// 1000 requests by default, still 25 new connections/s at this load.
		up, loc = "keepalive 16; keepalive_requests 1000000;", `proxy_http_version 1.1; proxy_set_header Connection "";`
	}
	conf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, upstream, up, loc)), 0o644)
	cmd := exec.Command("ip", "netns", "exec", ns.Name, bin, "-c", conf, "-p", dir)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	master := cmd.Process.Pid
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if w := children(master); len(w) == 2 {
			return filepath.Join(dir, "error.log"), w
		}
	}
	t.Fatalf("nginx did not start its 2 workers:\n%s", out)
	return "", nil
}

func children(pid int) []uint32 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []uint32
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(f)
		out = append(out, uint32(n))
	}
	return out
}

// serveUpstream is a keep-alive HTTP server that leaves closing to its
// client, as app servers behind a proxy usually do: so the proxy, closing
// after each response, is the side whose ports go to TIME_WAIT.
func serveUpstream(t *testing.T, ns *testnet.Netns, addr string) netip.AddrPort {
	t.Helper()
	return ns.Serve(t, addr, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" { // end of a request's headers
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n"))
			}
		}
	})
}

// load runs wrk against nginx for d.
func load(t *testing.T, ns *testnet.Netns, d time.Duration) string {
	t.Helper()
	wrk := testnet.RequireTool(t, "wrk")
	out, err := exec.Command("ip", "netns", "exec", ns.Name, wrk, "-t1", "-c4", "-d"+d.String(), "http://127.0.0.1:8080/").CombinedOutput()
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	return string(out)
}

func countLines(t *testing.T, path, substr string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), substr)
}

// finding is the advice of one rule about the port space sp.
func finding(s frame.Frame, rule string, sp summary.SpaceSummary) *diagnose.Finding {
	for i := range s.Findings {
		if s.Findings[i].Rule == rule && s.Findings[i].Space == sp.Where() {
			return &s.Findings[i]
		}
	}
	return nil
}

func TestNginxIncident(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTool(t, "nginx")
	testnet.RequireTool(t, "wrk")

	t.Run("without keepalive", func(t *testing.T) {
		ns := testnet.New(t, 40000, 40099)
		upstream := serveUpstream(t, ns, "127.0.0.1:8081")
		errLog, workers := startNginx(t, ns, upstream, false)
		top := startTop(t, "5s")
		wrk := load(t, ns, 2*time.Second)
		time.Sleep(300 * time.Millisecond)
		logged := countLines(t, errLog, "(99: Cannot assign requested address)")
		snap := top.wait(t)

		sp := spaceToward(t, snap, ns.Inode, upstream)
		t.Logf("wrk:\n%s\nporttrace: %.0f conn/s, %d TIME_WAIT, %d/%d used, failures %+v", wrk, sp.Conns.S10, sp.TimeWait, sp.Used, sp.Usable, sp.Failures)
		if logged == 0 {
			t.Fatalf("nginx logged no EADDRNOTAVAIL: the incident did not happen")
		}
		if got := failures(sp, "EADDRNOTAVAIL"); got != uint64(logged) {
			t.Errorf("porttrace counted %d EADDRNOTAVAIL, nginx's error log has %d", got, logged)
		}
		if len(sp.Processes) == 0 {
			t.Fatal("no process named")
		}
		for _, p := range sp.Processes {
			if p.Comm != "nginx" || !slicesContains(workers, p.PID) {
				t.Errorf("process %+v is not an nginx worker %v", p, workers)
			}
		}
		if !sp.Exhausted || sp.Usable != 100 {
			t.Errorf("exhausted %v usable %d", sp.Exhausted, sp.Usable)
		}
		k := finding(snap, "keepalive", sp)
		if k == nil || !strings.Contains(k.Evidence, "nginx (pid") || !strings.Contains(k.Fix, "keepalive 32;") {
			t.Fatalf("no nginx keepalive advice: %+v", snap.Findings)
		}
		t.Logf("advice: %s", k)
	})

	t.Run("with keepalive", func(t *testing.T) {
		ns := testnet.New(t, 40000, 40099)
		upstream := serveUpstream(t, ns, "127.0.0.1:8081")
		errLog, _ := startNginx(t, ns, upstream, true)
		top := startTop(t, "5s")
		wrk := load(t, ns, 2*time.Second)
		time.Sleep(300 * time.Millisecond)
		snap := top.wait(t)

		sp := spaceToward(t, snap, ns.Inode, upstream)
		t.Logf("wrk:\n%s\nporttrace: %d connections, %d TIME_WAIT, failures %+v", wrk, sp.TotalConns, sp.TimeWait, sp.Failures)
		if n := countLines(t, errLog, "(99: Cannot assign requested address)"); n != 0 || len(sp.Failures) != 0 {
			t.Errorf("failures with keepalive: nginx logged %d, porttrace %+v", n, sp.Failures)
		}
		// wrk's 4 connections need at most one upstream connection each
		// per worker.
		if sp.TotalConns > 8 || sp.UsedPct >= 50 {
			t.Errorf("%d upstream connections, %.0f%% used: keepalive should have stopped the churn", sp.TotalConns, sp.UsedPct)
		}
		// (wrk itself churns toward nginx, which closes a client connection
		// after 1000 requests: porttrace may rightly say so.)
		if f := finding(snap, "keepalive", sp); f != nil {
			t.Errorf("keepalive advised although configured: %s", f)
		}
	})
}

func slicesContains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
