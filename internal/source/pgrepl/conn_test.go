package pgrepl

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func rcvlowat(t *testing.T, c *lowatConn) int {
	t.Helper()
	var v int
	var serr error
	if err := c.raw.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return v
}

// TestLowatConn: a read turns SO_RCVLOWAT batching on; a bounded wait that
// ends with less than busyLowat queued times out, turns it off, and the
// queued bytes are then read at once: nothing stalls or is lost.
func TestLowatConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- nil
			return
		}
		srv <- c
	}()
	var d net.Dialer
	nc, err := lowatDial(d.DialContext)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := nc.(*lowatConn)
	s := <-srv
	if s == nil {
		t.Fatal("accept failed")
	}
	defer s.Close()
	c.enable()

	buf := make([]byte, 8192)
	s.Write([]byte("first"))
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "first" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if !c.busy || rcvlowat(t, c) != busyLowat {
		t.Fatalf("after a read: busy %v, SO_RCVLOWAT %d, want %d", c.busy, rcvlowat(t, c), busyLowat)
	}

	// A small tail: either it is queued before the read blocks (read at
	// once), or the read waits for busyLowat bytes until its deadline,
	// turns batching off, and the next read takes the tail.
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.Write([]byte("tail"))
	}()
	got := ""
	timeouts := 0
	for got != "tail" {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Read(buf)
		got += string(buf[:n])
		if errors.Is(err, os.ErrDeadlineExceeded) {
			timeouts++
			if c.busy || rcvlowat(t, c) != 1 {
				t.Fatalf("after a timeout: busy %v, SO_RCVLOWAT %d, want 1", c.busy, rcvlowat(t, c))
			}
			if timeouts > 2 {
				t.Fatalf("tail not read after %d timeouts (got %q)", timeouts, got)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("tail read after %d timeouts", timeouts)

	// An interrupt (deadline in the past, as Ack does) while batching.
	c.SetReadDeadline(time.Unix(1, 0))
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) || c.busy {
		t.Fatalf("interrupted read: %v, busy %v", err, c.busy)
	}
}
