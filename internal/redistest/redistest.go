// Package redistest starts a private redis-server for a test: on a free port of 127.0.0.1, with its data in
// the test's temporary directory, stopped by t.Cleanup. Owning the process lets a test kill and restart Redis
// in the middle of what it tests. It never touches a Redis that happens to run on the machine. StartCluster
// starts several, joined into a Redis Cluster.
//
// A missing redis-server fails the test (it is never skipped): install it with apt-get install -y redis-server.
//
// Concurrency: a Server's methods are safe for concurrent use, but Kill and Restart are meant to be called by
// the test goroutine (they call t.Fatalf).
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds the wait for a started redis-server to answer PING.
const startTimeout = 10 * time.Second

// Option changes how the server runs.
type Option func(*config)

type config struct {
	aof      bool
	password string
}

// AOF turns on the append-only file with an fsync after every write (appendonly yes, appendfsync always),
// so a killed and restarted server keeps every acknowledged write. Without it the server keeps nothing
// across a restart.
func AOF() Option { return func(c *config) { c.aof = true } }

// Password makes the server require a password (requirepass); URL includes it.
func Password(p string) Option { return func(c *config) { c.password = p } }

// Server is a running (or killed) redis-server owned by one test.
type Server struct {
	t       testing.TB
	bin     string
	port    int
	busPort int // cluster bus port of a cluster node; 0 when not in cluster mode
	dir     string
	cfg     config

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited; nil when no process was started
	started bool          // it has answered once: its port is the test's now
}

// Start starts a redis-server for t and stops it when t ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := newServer(t, opts)
	s.start()
	return s
}

// newServer prepares a server on a free port, stopped when t ends, without starting it.
func newServer(t testing.TB, opts []Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if _, statErr := os.Stat("/usr/bin/redis-server"); statErr != nil {
			t.Fatalf("redis-server not found: apt-get install -y redis-server")
		}
		bin = "/usr/bin/redis-server"
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	for _, o := range opts {
		o(&s.cfg)
	}
	s.port = freePort(t)
	t.Cleanup(s.stop)
	return s
}

// URL is the redis:// URL of the server.
func (s *Server) URL() string {
	if s.cfg.password != "" {
		return fmt.Sprintf("redis://:%s@127.0.0.1:%d", s.cfg.password, s.port)
	}
	return fmt.Sprintf("redis://127.0.0.1:%d", s.port)
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Kill stops the server with SIGKILL, as a crash would, and waits for it to exit.
func (s *Server) Kill() {
	s.t.Helper()
	s.stop()
}

// Restart starts the server again, killing it first if it still runs, on the same port and directory, and
// waits until it answers PING. With AOF the data written before the kill is back.
func (s *Server) Restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

func (s *Server) args() []string {
	args := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--dir", s.dir,
		"--logfile", "", "--daemonize", "no",
	}
	if s.cfg.aof {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	if s.cfg.password != "" {
		args = append(args, "--requirepass", s.cfg.password, "--masterauth", s.cfg.password)
	}
	if s.busPort != 0 {
		// nodes.conf lives in dir, so a restarted node comes back with its ID and slots.
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(s.busPort), "--cluster-node-timeout", "5000")
	}
	return args
}

// start starts the process and waits until it answers PING. A first start whose port another process took
// between freePort and the server's bind (tests of other packages run at the same time) tries other ports;
// a restart keeps its port, which the test knows.
func (s *Server) start() {
	s.t.Helper()
	for try := 1; ; try++ {
		log, ok := s.startOnce()
		if ok {
			s.started = true
			return
		}
		if s.started || try == 5 || !strings.Contains(log, portTaken) {
			s.t.Fatalf("redistest: redis-server exited at start: %s", log)
		}
		s.port = freePort(s.t)
		if s.busPort != 0 {
			s.busPort = freePort(s.t)
		}
	}
}

// portTaken is what redis-server logs when its port (or cluster bus port) is another process's.
const portTaken = "Address already in use"

// startOnce starts the process and waits until it answers PING (ok) or exits (its log). The answer must
// be this process's: another server on the port would answer too.
func (s *Server) startOnce() (log string, ok bool) {
	s.t.Helper()
	logPath := filepath.Join(s.dir, "redis.log")
	_ = os.Remove(logPath) // this attempt's lines only
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		s.t.Fatalf("redistest: start %s: %v", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		err := ping(s.Addr(), s.cfg.password)
		if err == nil {
			if pid, perr := s.pid(); perr == nil && pid != cmd.Process.Pid {
				s.stop()
				return fmt.Sprintf("port %d answered by process %d, not %d: %s", s.port, pid, cmd.Process.Pid, portTaken), false
			}
			return "", true
		}
		select {
		case <-done:
			s.mu.Lock()
			if s.done == done {
				s.cmd, s.done = nil, nil
			}
			s.mu.Unlock()
			return readLog(logPath), false
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			s.t.Fatalf("redistest: redis-server did not answer PING within %v: %v\n%s", startTimeout, err, readLog(logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pid is the process id of the server answering on the port (INFO server).
func (s *Server) pid() (int, error) {
	info, err := s.do("INFO", "server")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("redistest: no process_id in INFO server")
}

// stop kills the running process, if any, and waits for it.
func (s *Server) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// ping sends one PING (after AUTH when a password is set) and expects +PONG.
func ping(addr, password string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	rd := bufio.NewReader(conn)
	if password != "" {
		if _, err := fmt.Fprintf(conn, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password); err != nil {
			return err
		}
		if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			return fmt.Errorf("AUTH: %q %v", line, err)
		}
	}
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := rd.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		// -LOADING while an AOF is read back, for example.
		return errors.New(strings.TrimSpace(line))
	}
	return nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}

func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(b)
}
