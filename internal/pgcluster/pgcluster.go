// Package pgcluster starts a private, throwaway PostgreSQL cluster: initdb
// into a fresh directory, then the postgres server as a child process on a
// free TCP port of 127.0.0.1. Tests use it through internal/testutil/pgtest;
// `silt demo` uses it directly.
//
// The cluster is configured for logical replication and for speed, not
// durability (fsync, synchronous_commit and full_page_writes are off).
//
// Layout of Options.Dir (created if missing, must be empty):
//
//	<dir>/data          the data directory (initdb -D)
//	<dir>/.s.PGSQL.<p>  the Unix socket (unix_socket_directories=<dir>)
//	<dir>/postgres.log  stdout and stderr of initdb and postgres
//
// PostgreSQL refuses to run as root. When the effective uid is 0 the
// directory is chowned to the "postgres" user and initdb and postgres run
// with that user's credential; every parent of Dir must then be searchable by
// that user (the default, os.TempDir, is).
//
// Lifetime: Start returns once the server accepts connections. Restart
// stops the server (fast shutdown, or immediate with crash recovery) and
// starts it again on the same directory and port, for fault tests. Stop sends
// SIGINT (fast shutdown), waits for the process, and removes the directory
// unless Options.Keep is set. On Linux the server also gets SIGQUIT if the
// owning process dies, so a crashed test binary does not leak servers.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoBinaries is returned (wrapped) by Start when no PostgreSQL server
// binaries can be found.
var ErrNoBinaries = errors.New("PostgreSQL server binaries not found (install the postgresql package, or put pg_config on PATH)")

// Options configure Start. The zero value is valid.
type Options struct {
	// Dir is the cluster directory. Empty means a new directory under
	// os.TempDir. If it exists it must be empty.
	Dir string
	// BinDir overrides discovery of the directory holding initdb and postgres.
	BinDir string
	// ExtraSettings are passed as -c name=value after the defaults and so
	// override them (for example wal_level=replica).
	ExtraSettings map[string]string
	// Keep leaves the directory in place after Stop.
	Keep bool
	// StartTimeout bounds initdb plus the wait for readiness. Default 60s.
	StartTimeout time.Duration
}

// Cluster is a running PostgreSQL server. Its methods are safe for
// concurrent use.
type Cluster struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Dir is the cluster directory (see the package doc for its layout).
	Dir string

	keep    bool
	logPath string
	bin     string
	dataDir string
	cred    *syscall.Credential
	extra   map[string]string

	mu sync.Mutex // guards proc; held across Restart
	// proc is the running server process.
	proc *proc

	stopOnce sync.Once
	stopErr  error
}

// proc is one postgres process.
type proc struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed by the wait goroutine once cmd.Wait returns
	waitErr error         // set before exited is closed
}

func (c *Cluster) current() *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc
}

// defaultSettings are the -c settings every cluster gets.
var defaultSettings = map[string]string{
	"listen_addresses":      "127.0.0.1",
	"wal_level":             "logical",
	"max_replication_slots": "64",
	"max_wal_senders":       "64",
	"fsync":                 "off",
	"synchronous_commit":    "off",
	"full_page_writes":      "off",
	"wal_sender_timeout":    "10s",
	"max_connections":       "200",
	"logging_collector":     "off",
	"log_min_messages":      "warning",
}

// Start creates and starts a cluster. It returns an error wrapping
// ErrNoBinaries when PostgreSQL is not installed. Any other startup error
// includes the end of the server log.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bin := opts.BinDir
	if bin == "" {
		var err error
		if bin, err = FindBinDir(); err != nil {
			return nil, err
		}
	} else if !isExecutable(filepath.Join(bin, "postgres")) {
		return nil, fmt.Errorf("pgcluster: %s/postgres: %w", bin, ErrNoBinaries)
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := makeDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok && !opts.Keep {
			os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgcluster: chown %s to postgres: %w", dir, err)
		}
	}
	logPath := filepath.Join(dir, "postgres.log")
	dataDir := filepath.Join(dir, "data")

	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", dataDir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.Env = childEnv()
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		if cred != nil && errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("pgcluster: initdb as user postgres: %w (every parent of %s must be searchable by postgres)", err, dir)
		}
		return nil, fmt.Errorf("pgcluster: initdb: %w\n%s", err, tail(out, 4096))
	}

	// The port is found by binding :0 and released before postgres binds it,
	// so another process can take it in between; postgres then exits with
	// "could not bind" and we try again with a fresh port.
	const attempts = 5
	for i := 0; ; i++ {
		c := &Cluster{Dir: dir, logPath: logPath, bin: bin, dataDir: dataDir, cred: cred, extra: opts.ExtraSettings}
		err := c.launch(ctx, 0)
		if err == nil {
			c.keep = opts.Keep
			ok = true
			return c, nil
		}
		if !errors.Is(err, errPortTaken) || i == attempts-1 {
			return nil, err
		}
	}
}

var errPortTaken = errors.New("port already in use")

// launch starts postgres on port (0: a free one) and waits until it is
// ready; c.proc and c.Port are set on success.
func (c *Cluster) launch(ctx context.Context, port int) error {
	bin, dir, dataDir, logPath, cred, extra := c.bin, c.Dir, c.dataDir, c.logPath, c.cred, c.extra
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return err
		}
	}
	settings := make(map[string]string, len(defaultSettings)+len(extra)+2)
	for k, v := range defaultSettings {
		settings[k] = v
	}
	for k, v := range extra {
		settings[k] = v
	}
	settings["port"] = strconv.Itoa(port)
	settings["unix_socket_directories"] = dir
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)
	args := []string{"-D", dataDir}
	for _, k := range names {
		args = append(args, "-c", k+"="+settings[k])
	}

	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	// Not CommandContext: the server must outlive ctx, which only bounds startup.
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
	err = cmd.Start()
	logf.Close() // the child holds its own descriptor
	if err != nil {
		return fmt.Errorf("pgcluster: start postgres: %w", err)
	}
	pr := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { // owned by c: Stop, Restart (or a failed start below) wait for exited
		pr.waitErr = cmd.Wait()
		close(pr.exited)
	}()
	logStart := len(c.Log())
	if c.Port != port { // unchanged on Restart, where DSN may be read concurrently
		c.Port = port
	}
	if err := c.waitReady(ctx, pr); err != nil {
		pr.kill()
		log := c.Log()
		if len(log) >= logStart {
			log = log[logStart:]
		}
		if bytes.Contains(log, []byte("could not bind")) || bytes.Contains(log, []byte("already in use")) {
			return fmt.Errorf("pgcluster: port %d: %w", port, errPortTaken)
		}
		return fmt.Errorf("pgcluster: postgres did not become ready: %w\n--- server log (%s) ---\n%s", err, logPath, tail(log, 8192))
	}
	c.proc = pr
	return nil
}

// Restart stops the server and starts it again on the same directory and
// port. With immediate false it is a fast shutdown (SIGINT: walsenders
// send what they have, then end); with immediate true an immediate one
// (SIGQUIT: no checkpoint, crash recovery at start), like a server crash.
// Connections break either way; clients must reconnect.
func (c *Cluster) Restart(ctx context.Context, immediate bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	pr := c.proc
	if pr == nil {
		return errors.New("pgcluster: not running")
	}
	sig := syscall.SIGINT
	if immediate {
		sig = syscall.SIGQUIT
	}
	_ = pr.cmd.Process.Signal(sig)
	select {
	case <-pr.exited:
	case <-time.After(30 * time.Second):
		pr.kill()
	}
	c.proc = nil
	// The port was ours a moment ago; retry briefly in case the kernel
	// has not released it yet.
	var err error
	for i := 0; i < 20; i++ {
		if err = c.launch(ctx, c.Port); err == nil || !errors.Is(err, errPortTaken) {
			return err
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return err
}

// waitReady polls a connection until it succeeds, the server exits or ctx ends.
func (c *Cluster) waitReady(ctx context.Context, pr *proc) error {
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(attempt, c.DSN("postgres"))
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		last = err
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-pr.exited:
			t.Stop()
			return fmt.Errorf("postgres exited: %v", pr.waitErr)
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last connect error: %v)", ctx.Err(), last)
		case <-t.C:
		}
	}
}

// kill stops the process immediately and waits for it.
func (pr *proc) kill() {
	_ = pr.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-pr.exited:
	case <-time.After(10 * time.Second):
		_ = pr.cmd.Process.Kill()
		<-pr.exited
	}
}

// DSN returns a URL connection string for database dbname over TCP as the
// superuser postgres, for example
// "postgres://postgres@127.0.0.1:54321/app?sslmode=disable".
func (c *Cluster) DSN(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Log returns the server log so far (for error messages).
func (c *Cluster) Log() []byte {
	b, _ := os.ReadFile(c.logPath)
	return b
}

// Stop shuts the server down (SIGINT, fast shutdown; SIGQUIT then SIGKILL if
// it does not exit in time), waits for it and removes the directory unless
// Options.Keep was set. It is idempotent and returns the same result each time.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		c.mu.Lock() // waits for a Restart in progress
		pr := c.proc
		c.mu.Unlock()
		if pr != nil {
			select {
			case <-pr.exited:
			default:
				_ = pr.cmd.Process.Signal(syscall.SIGINT)
				select {
				case <-pr.exited:
				case <-time.After(30 * time.Second):
					c.stopErr = errors.New("pgcluster: postgres did not stop within 30s after SIGINT; killed")
					pr.kill()
				}
			}
		}
		if !c.keep {
			if err := os.RemoveAll(c.Dir); err != nil && c.stopErr == nil {
				c.stopErr = fmt.Errorf("pgcluster: remove %s: %w", c.Dir, err)
			}
		}
	})
	return c.stopErr
}

// FindBinDir locates the directory holding the postgres and initdb
// binaries: `pg_config --bindir` first, else the highest version under
// /usr/lib/postgresql/*/bin. It returns an error wrapping ErrNoBinaries when
// neither works.
func FindBinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if isExecutable(filepath.Join(dir, "postgres")) && isExecutable(filepath.Join(dir, "initdb")) {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestVer := "", -1.0
	for _, m := range matches {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(m)), 64)
		if err != nil || v <= bestVer {
			continue
		}
		if isExecutable(filepath.Join(m, "postgres")) && isExecutable(filepath.Join(m, "initdb")) {
			best, bestVer = m, v
		}
	}
	if best == "" {
		return "", fmt.Errorf("pgcluster: %w", ErrNoBinaries)
	}
	return best, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// credential returns the postgres user's credential when running as root,
// else nil (run as ourselves).
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: running as root and PostgreSQL refuses root; need a 'postgres' user: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgcluster: postgres user has non-numeric uid/gid %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func makeDir(dir string) (string, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "silt-pg-")
		if err != nil {
			return "", fmt.Errorf("pgcluster: %w", err)
		}
		return d, nil
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("pgcluster: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("pgcluster: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("pgcluster: %w", err)
	}
	if len(ents) != 0 {
		return "", fmt.Errorf("pgcluster: directory %s is not empty", dir)
	}
	return dir, nil
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgcluster: find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port, nil
}

// childEnv is our environment minus PG* variables, which would otherwise
// change where initdb and postgres look for things.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
