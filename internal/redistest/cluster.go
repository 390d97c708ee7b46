package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SlotCount is the number of hash slots of a Redis Cluster.
const SlotCount = 16384

// Cluster is a Redis Cluster of masters without replicas, owned by one test: every node is a Server (Kill and
// Restart work on it; a restarted node keeps its ID and slots, and with AOF its data).
type Cluster struct {
	t     testing.TB
	nodes []*Server
	ids   []string // node IDs, by index in nodes

	mu    sync.Mutex
	owner [SlotCount]int // index in nodes of each slot's master
}

// StartCluster starts n redis-server processes in cluster mode (each with its cluster bus on a port of its
// own), gives each an equal range of the slots, joins them into one cluster and waits until every node
// reports cluster_state:ok. Options apply to every node. It takes about 2 s: a master that starts reports
// its cluster state ok only 2 s after it started.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("redistest: a cluster of %d nodes", n)
	}
	c := &Cluster{t: t}
	used := map[int]bool{}
	port := func() int {
		for range 100 {
			if p := freePort(t); !used[p] {
				used[p] = true
				return p
			}
		}
		t.Fatalf("redistest: no free port")
		return 0
	}
	for range n {
		s := newServer(t, opts)
		used[s.port] = true
		s.busPort = port()
		c.nodes = append(c.nodes, s)
	}
	for _, s := range c.nodes {
		s.start()
	}
	for i, s := range c.nodes {
		id, err := s.do("CLUSTER", "MYID")
		if err != nil {
			t.Fatalf("redistest: CLUSTER MYID on %s: %v", s.Addr(), err)
		}
		c.ids = append(c.ids, id)
		lo, hi := i*SlotCount/n, (i+1)*SlotCount/n-1
		if _, err := s.do("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			t.Fatalf("redistest: CLUSTER ADDSLOTSRANGE on %s: %v", s.Addr(), err)
		}
		for slot := lo; slot <= hi; slot++ {
			c.owner[slot] = i
		}
	}
	// Every pair meets, rather than waiting for gossip to introduce them.
	for i, a := range c.nodes {
		for _, b := range c.nodes[i+1:] {
			if _, err := a.do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(b.port), strconv.Itoa(b.busPort)); err != nil {
				t.Fatalf("redistest: CLUSTER MEET %s: %v", b.Addr(), err)
			}
		}
	}
	c.WaitOK()
	return c
}

// Nodes returns the cluster's nodes (all masters).
func (c *Cluster) Nodes() []*Server { return c.nodes }

// URL is a redis:// URL naming every node the way redis.ParseClusterURL reads it:
// redis://[:password@]host:port?addr=host:port&addr=….
func (c *Cluster) URL() string {
	u := c.nodes[0].URL()
	for i, s := range c.nodes[1:] {
		if i == 0 {
			u += "?"
		} else {
			u += "&"
		}
		u += "addr=" + s.Addr()
	}
	return u
}

// NodeOf returns the master that owns the slot.
func (c *Cluster) NodeOf(slot int) *Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[c.owner[slot]]
}

// WaitOK waits until every node that runs reports cluster_state:ok and knows every other node.
func (c *Cluster) WaitOK() {
	c.t.Helper()
	want := fmt.Sprintf("cluster_known_nodes:%d", len(c.nodes))
	deadline := time.Now().Add(startTimeout)
	for {
		var bad error
		for _, s := range c.nodes {
			if !s.running() {
				continue
			}
			info, err := s.do("CLUSTER", "INFO")
			if err == nil && (!strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, want)) {
				err = errors.New(strings.ReplaceAll(strings.TrimSpace(info), "\r\n", " "))
			}
			if err != nil {
				bad = fmt.Errorf("%s: %w", s.Addr(), err)
				break
			}
		}
		if bad == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: cluster not ok within %v: %v", startTimeout, bad)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MigrateSlot moves a slot, with its keys, to another master, as redis-cli --cluster reshard does: the
// target imports it, the owner migrates it, its keys are moved with MIGRATE, and every node is told the new
// owner. Every node must be running.
func (c *Cluster) MigrateSlot(slot int, to *Server) {
	c.t.Helper()
	c.mu.Lock()
	fromIdx := c.owner[slot]
	c.mu.Unlock()
	toIdx := -1
	for i, s := range c.nodes {
		if s == to {
			toIdx = i
		}
	}
	if toIdx < 0 {
		c.t.Fatalf("redistest: MigrateSlot to a server not in the cluster")
	}
	if toIdx == fromIdx {
		return
	}
	from := c.nodes[fromIdx]
	s := strconv.Itoa(slot)
	must := func(srv *Server, args ...string) string {
		c.t.Helper()
		r, err := srv.do(args...)
		if err != nil {
			c.t.Fatalf("redistest: %s on %s: %v", strings.Join(args, " "), srv.Addr(), err)
		}
		return r
	}
	must(to, "CLUSTER", "SETSLOT", s, "IMPORTING", c.ids[fromIdx])
	must(from, "CLUSTER", "SETSLOT", s, "MIGRATING", c.ids[toIdx])
	for {
		keys, err := from.doList("CLUSTER", "GETKEYSINSLOT", s, "100")
		if err != nil {
			c.t.Fatalf("redistest: CLUSTER GETKEYSINSLOT on %s: %v", from.Addr(), err)
		}
		if len(keys) == 0 {
			break
		}
		args := []string{"MIGRATE", "127.0.0.1", strconv.Itoa(to.port), "", "0", "5000"}
		if from.cfg.password != "" {
			args = append(args, "AUTH", from.cfg.password)
		}
		args = append(args, "KEYS")
		must(from, append(args, keys...)...)
	}
	// The new owner first, then the old one, then the others (as redis-cli does).
	must(to, "CLUSTER", "SETSLOT", s, "NODE", c.ids[toIdx])
	must(from, "CLUSTER", "SETSLOT", s, "NODE", c.ids[toIdx])
	for i, srv := range c.nodes {
		if i != fromIdx && i != toIdx {
			must(srv, "CLUSTER", "SETSLOT", s, "NODE", c.ids[toIdx])
		}
	}
	c.mu.Lock()
	c.owner[slot] = toIdx
	c.mu.Unlock()
}

// KeySlot returns the hash slot of a key (CRC16 of the key, or of its {hash tag}, modulo 16384).
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % SlotCount)
}

// crc16 is CRC-16/XMODEM, the checksum Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// running reports whether the server's process runs (it was not killed, or was restarted since).
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// do sends one command to the server (after AUTH when a password is set) and returns its reply when it is a
// status, an integer or a bulk string.
func (s *Server) do(args ...string) (string, error) {
	v, err := s.command(args...)
	if err != nil {
		return "", err
	}
	str, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: unexpected reply %v", args[0], v)
	}
	return str, nil
}

// doList is do for a command whose reply is an array of strings.
func (s *Server) doList(args ...string) ([]string, error) {
	v, err := s.command(args...)
	if err != nil {
		return nil, err
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: unexpected reply %v", args[0], v)
	}
	out := make([]string, len(list))
	for i, e := range list {
		if out[i], ok = e.(string); !ok {
			return nil, fmt.Errorf("%s: unexpected element %v", args[0], e)
		}
	}
	return out, nil
}

func (s *Server) command(args ...string) (any, error) {
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	rd := bufio.NewReader(conn)
	if s.cfg.password != "" {
		if err := writeCommand(conn, "AUTH", s.cfg.password); err != nil {
			return nil, err
		}
		if _, err := readReply(rd); err != nil {
			return nil, fmt.Errorf("AUTH: %w", err)
		}
	}
	if err := writeCommand(conn, args...); err != nil {
		return nil, err
	}
	return readReply(rd)
}

func writeCommand(w io.Writer, args ...string) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&sb, "$%d\r\n%s\r\n", len(a), a)
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// readReply reads one RESP2 reply: a status, integer or bulk string as a string, nil for a null, []any for
// an array, an error for an error reply.
func readReply(rd *bufio.Reader) (any, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return nil, errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, fmt.Errorf("bulk length %q: %w", line, err)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, fmt.Errorf("array length %q: %w", line, err)
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(rd); err != nil {
				return nil, err
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unexpected reply %q", line)
	}
}
