package pgrepl

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"
)

// lowatConn is the replication connection's socket. The walsender sends
// every message as its own small write, so a reader that keeps up wakes,
// and reads, once per message: ~100,000 wake-ups a second during a backlog
// drain, each costing the reader a read, an epoll round and the Go
// scheduler's work around them, and the walsender a wake-up of the reader:
// CPU taken from decoding on a busy machine. (Measured with silt bench:
// ~300-500 bytes per read without this, ~5 KiB with it.)
//
// So while data flows, the socket's SO_RCVLOWAT is busyLowat: the kernel
// wakes the reader once that much is queued rather than per message, and
// Run bounds each such wait by busyWait through the read deadline. When a
// wait times out (the flow paused with less than busyLowat queued, or Run
// interrupted the wait), SO_RCVLOWAT goes back to 1: what is queued is read
// at once, and an idle stream is waited for without a timer. The next
// successful read turns batching on again. A message therefore waits at
// most busyWait longer than it would otherwise.
//
// Only plain TCP sockets do this, once Run has started streaming (enable);
// TLS connections and Unix sockets are read as before.
type lowatConn struct {
	net.Conn
	raw     syscall.RawConn // nil: not a TCP socket
	enabled bool            // set by Run once streaming starts; Run's goroutine only
	busy    bool            // SO_RCVLOWAT is busyLowat
}

const (
	busyLowat = 16 << 10
	busyWait  = 2 * time.Millisecond
)

func (c *lowatConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.enabled {
		return n, err
	}
	var ne net.Error
	switch {
	case c.busy && err != nil && errors.As(err, &ne) && ne.Timeout():
		c.setBusy(false)
	case !c.busy && n > 0:
		c.setBusy(true)
	}
	return n, err
}

func (c *lowatConn) setBusy(busy bool) {
	v := 1
	if busy {
		v = busyLowat
	}
	var serr error
	err := c.raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, v)
	})
	if err != nil || serr != nil {
		c.enabled, c.busy = false, false // the socket refuses: read as before
		return
	}
	c.busy = busy
}

// enable turns batching on for a TCP socket.
func (c *lowatConn) enable() {
	if c.raw != nil {
		c.enabled = true
	}
}

// lowatDial wraps dial's connections in lowatConn.
func lowatDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		lc := &lowatConn{Conn: c}
		if tc, ok := c.(*net.TCPConn); ok {
			if raw, err := tc.SyscallConn(); err == nil {
				lc.raw = raw
			}
		}
		return lc, nil
	}
}
