package locallog

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// FS is the file layer every disk operation of the log goes through, so
// tests can crash it at any write or sync, or fail single operations. It is
// deliberately narrow: the log only creates, appends to, truncates, reads,
// removes and renames files in a few directories.
type FS interface {
	// MkdirAll creates dir and its parents.
	MkdirAll(dir string) error
	// Create creates name, which must not exist, for reading and writing.
	Create(name string) (File, error)
	// OpenRW opens an existing file for reading and writing.
	OpenRW(name string) (File, error)
	// Open opens an existing file read-only.
	Open(name string) (File, error)
	// Remove deletes a file.
	Remove(name string) error
	// Rename renames a file, replacing newname if it exists.
	Rename(oldname, newname string) error
	// ReadDir lists the names of the entries in dir, in no particular order.
	ReadDir(dir string) ([]string, error)
	// SyncDir makes the creation, removal and renaming of entries in dir
	// durable.
	SyncDir(dir string) error
	// Lock takes an exclusive, advisory lock on name (created if needed),
	// released by closing the result. It fails if another holder exists.
	Lock(name string) (io.Closer, error)
}

// File is an open file. ReadAt must be safe to call concurrently with
// itself and with WriteAt on another File of the same name.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	// Sync makes everything written so far durable: the data and the
	// size (fdatasync on Linux; the modification time need not be).
	Sync() error
	// Allocate reserves disk space so the file is at least size bytes
	// long, the new bytes reading as zeros (fallocate on Linux). Writes
	// inside reserved space then change no file size, so their Sync need
	// not commit the size to the file system's journal. An FS that cannot
	// reserve space does nothing and returns nil.
	Allocate(size int64) error
	// Truncate changes the size of the file.
	Truncate(size int64) error
	// Stat returns the file's size and modification time.
	Stat() (fs.FileInfo, error)
}

// OSFS is the FS of the operating system.
type OSFS struct{}

var _ FS = OSFS{}

func (OSFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

func (OSFS) Create(name string) (File, error) {
	return wrapOS(os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644))
}

func (OSFS) OpenRW(name string) (File, error) { return wrapOS(os.OpenFile(name, os.O_RDWR, 0)) }

func (OSFS) Open(name string) (File, error) { return wrapOS(os.Open(name)) }

// osFile is an *os.File whose Sync is fdatasync and which can Allocate
// (fs_linux.go; elsewhere Sync is fsync and Allocate does nothing).
type osFile struct{ *os.File }

func wrapOS(f *os.File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (f osFile) Sync() error { return datasync(f.File) }

func (f osFile) Allocate(size int64) error { return allocate(f.File, size) }

func (f osFile) StartWriteback(off, n int64) { startWriteback(f.File, off, n) }

// writebackStarter is a File that can start writing a range of its dirty
// pages to the device without waiting (sync_file_range(2) with
// SYNC_FILE_RANGE_WRITE on Linux; nothing elsewhere). The flusher calls it
// on each piece it writes, so the device is busy with earlier pieces while
// later ones are still being copied in, and the fsync that ends a group
// commit only waits for the tail. It is a hint: it reports nothing, and
// only Sync makes anything durable (a write-back error surfaces there).
// A File without it (the tests' memFS) simply skips the hint.
type writebackStarter interface {
	StartWriteback(off, n int64)
}

func (OSFS) Remove(name string) error { return os.Remove(name) }

func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

func (OSFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// errLocked reports that another process holds the log's lock file.
var errLocked = errors.New("locked by another process")

func (OSFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return f, nil
}

// writeFileAtomic makes name appear whole or not at all: write a temp file,
// fsync it, rename it over name, fsync the directory.
func writeFileAtomic(fsys FS, name string, data []byte) error {
	tmp := name + ".tmp"
	_ = fsys.Remove(tmp) // left over from a crash; absence is fine
	f, err := fsys.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fsys.Rename(tmp, name); err != nil {
		return err
	}
	return fsys.SyncDir(filepath.Dir(name))
}

// readFile reads a whole (small) file.
func readFile(fsys FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > 1<<20 {
		return nil, fmt.Errorf("%s is %d bytes; expected a small file", name, fi.Size())
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}
