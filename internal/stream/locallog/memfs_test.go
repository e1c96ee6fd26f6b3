package locallog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// memFS is an in-memory FS that remembers what was made durable, so a test
// can "crash" it: crashClone keeps, per file, the data as of its last Sync
// (plus, optionally, a random part of what was written after it, as a disk
// may persist some unsynced pages), and per directory the entries as of its
// last SyncDir. Directories themselves are durable once made.
//
// failAfter(n) makes every mutating operation after the next n fail with
// errInjected, which models the process dying at that point: nothing after
// it reaches the "disk".
type memFS struct {
	mu     sync.Mutex
	dirs   map[string]*memDir
	locks  map[string]bool
	budget int  // mutating operations left before failing; -1: unlimited
	ops    int  // mutating operations performed
	failed bool // an injected failure fired
}

var errInjected = errors.New("injected failure")

type memDir struct {
	entries map[string]*memFile
	synced  map[string]*memFile
}

type memFile struct {
	mu      sync.Mutex
	data    []byte
	synced  []byte
	modTime time.Time
}

func newMemFS() *memFS {
	return &memFS{dirs: map[string]*memDir{}, locks: map[string]bool{}, budget: -1}
}

func (m *memFS) failAfter(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.budget = n
}

// fired reports whether an injected failure fired.
func (m *memFS) fired() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed
}

// step accounts for one mutating operation. Caller holds m.mu.
func (m *memFS) step() error {
	if m.budget == 0 {
		m.failed = true
		return errInjected
	}
	if m.budget > 0 {
		m.budget--
	}
	m.ops++
	return nil
}

func (m *memFS) dir(name string) (*memDir, string, error) {
	name = filepath.Clean(name)
	d, ok := m.dirs[filepath.Dir(name)]
	if !ok {
		return nil, "", fmt.Errorf("%s: %w", filepath.Dir(name), fs.ErrNotExist)
	}
	return d, filepath.Base(name), nil
}

func (m *memFS) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, ok := m.dirs[d]; !ok {
			m.dirs[d] = &memDir{entries: map[string]*memFile{}, synced: map[string]*memFile{}}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func (m *memFS) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return nil, err
	}
	d, base, err := m.dir(name)
	if err != nil {
		return nil, err
	}
	if _, ok := d.entries[base]; ok {
		return nil, fmt.Errorf("create %s: %w", name, fs.ErrExist)
	}
	f := &memFile{modTime: time.Now()}
	d.entries[base] = f
	return &memHandle{fs: m, f: f, write: true}, nil
}

func (m *memFS) open(name string, write bool) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.dir(name)
	if err != nil {
		return nil, err
	}
	f, ok := d.entries[base]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
	}
	return &memHandle{fs: m, f: f, write: write}, nil
}

func (m *memFS) OpenRW(name string) (File, error) { return m.open(name, true) }
func (m *memFS) Open(name string) (File, error)   { return m.open(name, false) }

func (m *memFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return err
	}
	d, base, err := m.dir(name)
	if err != nil {
		return err
	}
	if _, ok := d.entries[base]; !ok {
		return fmt.Errorf("remove %s: %w", name, fs.ErrNotExist)
	}
	delete(d.entries, base)
	return nil
}

func (m *memFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return err
	}
	od, ob, err := m.dir(oldname)
	if err != nil {
		return err
	}
	nd, nb, err := m.dir(newname)
	if err != nil {
		return err
	}
	f, ok := od.entries[ob]
	if !ok {
		return fmt.Errorf("rename %s: %w", oldname, fs.ErrNotExist)
	}
	delete(od.entries, ob)
	nd.entries[nb] = f
	return nil
}

func (m *memFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.dirs[filepath.Clean(dir)]
	if !ok {
		return nil, fmt.Errorf("readdir %s: %w", dir, fs.ErrNotExist)
	}
	var names []string
	for n := range d.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

func (m *memFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return err
	}
	d, ok := m.dirs[filepath.Clean(dir)]
	if !ok {
		return fmt.Errorf("syncdir %s: %w", dir, fs.ErrNotExist)
	}
	d.synced = make(map[string]*memFile, len(d.entries))
	for n, f := range d.entries {
		d.synced[n] = f
	}
	return nil
}

type memLock struct {
	fs   *memFS
	name string
}

func (l memLock) Close() error {
	l.fs.mu.Lock()
	defer l.fs.mu.Unlock()
	delete(l.fs.locks, l.name)
	return nil
}

func (m *memFS) Lock(name string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if m.locks[name] {
		return nil, errLocked
	}
	m.locks[name] = true
	return memLock{m, name}, nil
}

// crashClone returns the FS a machine would find after a crash now. With a
// non-nil rng each file also keeps a random prefix of its unsynced tail.
func (m *memFS) crashClone(rng *rand.Rand) *memFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := newMemFS()
	clones := map[*memFile]*memFile{}
	names := make([]string, 0, len(m.dirs))
	for n := range m.dirs {
		names = append(names, n)
	}
	sort.Strings(names) // deterministic use of rng
	for _, dn := range names {
		d := m.dirs[dn]
		cd := &memDir{entries: map[string]*memFile{}, synced: map[string]*memFile{}}
		fnames := make([]string, 0, len(d.synced))
		for n := range d.synced {
			fnames = append(fnames, n)
		}
		sort.Strings(fnames)
		for _, n := range fnames {
			f := d.synced[n]
			cf, ok := clones[f]
			if !ok {
				f.mu.Lock()
				keep := f.synced
				if rng != nil {
					keep = tornState(f.synced, f.data, rng)
				}
				cf = &memFile{data: bytes.Clone(keep), synced: bytes.Clone(keep), modTime: f.modTime}
				f.mu.Unlock()
				clones[f] = cf
			}
			cd.entries[n], cd.synced[n] = cf, cf
		}
		c.dirs[dn] = cd
	}
	return c
}

// tornState is what a disk may hold after a crash: the synced bytes with
// the unsynced changes applied up to a random byte (writes land in order
// up to some point), the size being the synced or the current one.
func tornState(synced, data []byte, rng *rand.Rand) []byte {
	d := 0 // first byte where data differs from synced
	for d < len(synced) && d < len(data) && synced[d] == data[d] {
		d++
	}
	if d == len(synced) && d == len(data) {
		return synced
	}
	cut := d + rng.IntN(max(len(data), len(synced))-d+1)
	size := len(synced)
	if rng.IntN(2) == 0 || cut > len(synced) {
		size = len(data)
	}
	out := make([]byte, size)
	copy(out, synced)
	copy(out[:min(cut, size)], data)
	return out
}

// file returns the named file for a test to inspect or damage.
func (m *memFS) file(name string) *memFile {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.dir(name)
	if err != nil {
		return nil
	}
	return d.entries[base]
}

type memHandle struct {
	fs     *memFS
	f      *memFile
	write  bool
	closed bool
}

func (h *memHandle) ReadAt(p []byte, off int64) (int, error) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if off >= int64(len(h.f.data)) {
		return 0, io.EOF
	}
	n := copy(p, h.f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (h *memHandle) WriteAt(p []byte, off int64) (int, error) {
	if !h.write {
		return 0, errors.New("file opened read-only")
	}
	h.fs.mu.Lock()
	err := h.fs.step()
	h.fs.mu.Unlock()
	if err != nil {
		return 0, err
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(h.f.data)) {
		h.f.data = append(h.f.data, make([]byte, end-int64(len(h.f.data)))...)
	}
	copy(h.f.data[off:], p)
	h.f.modTime = time.Now()
	return len(p), nil
}

func (h *memHandle) Sync() error {
	h.fs.mu.Lock()
	err := h.fs.step()
	h.fs.mu.Unlock()
	if err != nil {
		return err
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	h.f.synced = bytes.Clone(h.f.data)
	return nil
}

func (h *memHandle) Truncate(size int64) error {
	h.fs.mu.Lock()
	err := h.fs.step()
	h.fs.mu.Unlock()
	if err != nil {
		return err
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if size < int64(len(h.f.data)) {
		h.f.data = h.f.data[:size:size]
	} else {
		h.f.data = append(h.f.data, make([]byte, size-int64(len(h.f.data)))...)
	}
	return nil
}

// Allocate extends the file with zeros, as fallocate does; like a write,
// the new size is durable only after Sync.
func (h *memHandle) Allocate(size int64) error {
	h.fs.mu.Lock()
	err := h.fs.step()
	h.fs.mu.Unlock()
	if err != nil {
		return err
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if size > int64(len(h.f.data)) {
		h.f.data = append(h.f.data, make([]byte, size-int64(len(h.f.data)))...)
	}
	return nil
}

func (h *memHandle) Close() error {
	if h.closed {
		return errors.New("close of closed file")
	}
	h.closed = true
	return nil
}

func (h *memHandle) Stat() (fs.FileInfo, error) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return memInfo{size: int64(len(h.f.data)), mod: h.f.modTime}, nil
}

type memInfo struct {
	size int64
	mod  time.Time
}

func (i memInfo) Name() string       { return "" }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o644 }
func (i memInfo) ModTime() time.Time { return i.mod }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }
