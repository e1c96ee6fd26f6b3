// Package faultproxy is an in-process TCP proxy for tests that can cut or
// stall the connections passing through it, to simulate network faults
// between silt and PostgreSQL (PeerDB does the same with toxiproxy).
//
//	px := faultproxy.Start(t, "127.0.0.1:5432")
//	dsn := "postgres://postgres@" + px.Addr() + "/db"
//	px.Cut()    // close every open connection (both sides see a reset/EOF)
//	px.Stall()  // stop forwarding bytes; connections stay open
//	px.Resume() // forward again
//	px.Refuse(true) // new connections are closed at once
//
// The proxy is closed at test cleanup; every goroutine it starts is waited
// for there.
package faultproxy

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections from Addr to a target.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu      sync.Mutex
	conns   map[*pair]struct{}
	stalled bool
	resume  chan struct{} // closed by Resume; replaced by Stall
	refuse  bool
	closed  bool
	// Accepted counts connections accepted (refused ones included).
	accepted int
}

type pair struct {
	client, server net.Conn
	once           sync.Once
	done           chan struct{} // closed by close
}

func (p *pair) close() {
	p.once.Do(func() {
		close(p.done)
		p.client.Close()
		p.server.Close()
	})
}

// Start listens on 127.0.0.1 (a free port) and forwards to target. It is
// closed at test cleanup.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[*pair]struct{}{}, resume: make(chan struct{})}
	close(p.resume)
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted returns how many connections were accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		p.accepted++
		if p.refuse || p.closed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pr := &pair{client: c, server: s, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			pr.close()
			continue
		}
		p.conns[pr] = struct{}{}
		p.mu.Unlock()
		var done sync.WaitGroup
		done.Add(2)
		p.wg.Go(func() { defer done.Done(); p.pipe(pr, s, c) })
		p.wg.Go(func() { defer done.Done(); p.pipe(pr, c, s) })
		p.wg.Go(func() {
			done.Wait()
			p.mu.Lock()
			delete(p.conns, pr)
			p.mu.Unlock()
		})
	}
}

// pipe copies src to dst, waiting while the proxy is stalled.
func (p *Proxy) pipe(pr *pair, dst, src net.Conn) {
	defer pr.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			// A stalled proxy holds what it read: nothing reaches the other
			// side until Resume (or Cut/Close, which end the pair).
			p.mu.Lock()
			resume := p.resume
			p.mu.Unlock()
			select {
			case <-resume:
			case <-pr.done:
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a cut: closing the pair ends the other direction too
		}
	}
}

// Cut closes every open connection; the proxy keeps accepting new ones.
func (p *Proxy) Cut() {
	p.mu.Lock()
	conns := make([]*pair, 0, len(p.conns))
	for pr := range p.conns {
		conns = append(conns, pr)
	}
	p.mu.Unlock()
	for _, pr := range conns {
		pr.close()
	}
}

// Stall stops forwarding bytes in both directions until Resume. Open
// connections stay open, like a network path that silently drops packets.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled = true
		p.resume = make(chan struct{})
	}
}

// Resume ends a Stall.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.stalled = false
		close(p.resume)
	}
}

// Refuse makes the proxy close new connections at once (on) or forward
// them again (off), like a server that is down.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// Close stops the proxy, closes every connection and waits for its
// goroutines. It is idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.Resume()
	p.Cut()
	p.wg.Wait()
}
