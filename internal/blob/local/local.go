// Package local implements blob.Store over a directory on the local disk.
//
// Files appear whole or not at all: Put writes a temp file in the target
// directory, fsyncs it, renames it over the key and fsyncs the directory.
// PutIfAbsent links the synced temp file to the key (link fails if the key
// exists), so two writers racing on one key cannot both win.
package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/silt-dev/silt/internal/blob"
)

// Store is a blob.Store rooted at a directory.
type Store struct {
	root string
	// NoSync skips fsync (tests and throwaway demos only).
	NoSync bool
}

// New returns a store rooted at dir, creating it if needed.
func New(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("blob/local: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("blob/local: create root %s: %w", abs, err)
	}
	return &Store{root: abs}, nil
}

// Root returns the directory the store is rooted at.
func (s *Store) Root() string { return s.root }

func (s *Store) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return "", fmt.Errorf("blob/local: invalid key %q", key)
	}
	clean := filepath.Clean(filepath.FromSlash(key))
	if clean == "." || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("blob/local: key %q escapes the root", key)
	}
	return filepath.Join(s.root, clean), nil
}

func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if notExist(err) {
		return nil, fmt.Errorf("get %s: %w", key, blob.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return b, nil
}

// notExist reports errors meaning "no such object": the file is missing, a
// path component is a file (ENOTDIR), or the key names a directory
// (EISDIR), which in an object store is only a prefix of other keys.
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR)
}

type reader struct {
	*os.File
	size int64
}

func (r reader) Size() int64 { return r.size }

func (s *Store) Open(ctx context.Context, key string) (blob.Reader, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if notExist(err) {
		return nil, fmt.Errorf("open %s: %w", key, blob.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", key, err)
	}
	if st.IsDir() {
		// A directory is a prefix of other keys, not an object (as in S3).
		f.Close()
		return nil, fmt.Errorf("open %s: %w", key, blob.ErrNotExist)
	}
	return reader{File: f, size: st.Size()}, nil
}

// writeTemp writes data to a synced temp file next to p and returns its name.
func (s *Store) writeTemp(p string, data []byte) (string, error) {
	dir := filepath.Dir(p)
	if err := s.mkdirs(dir); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(p)+"-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	_, err = bytes.NewReader(data).WriteTo(f)
	if err == nil && !s.NoSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// mkdirs creates dir and its missing parents, and fsyncs the parent of
// every directory it created: otherwise a crash could lose a new directory
// (and every file renamed into it) even though the file and its own
// directory were synced.
func (s *Store) mkdirs(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == s.root || filepath.Dir(d) == d {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		// Sync the parent even if another writer created d first: that
		// writer may not have synced the parent yet.
		if err := s.syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) syncDir(dir string) error {
	if s.NoSync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	tmp, err := s.writeTemp(p, data)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := s.syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("put %s: sync dir: %w", key, err)
	}
	return nil
}

func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	tmp, err := s.writeTemp(p, data)
	if err != nil {
		return fmt.Errorf("put-if-absent %s: %w", key, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("put-if-absent %s: %w", key, blob.ErrExists)
		}
		return fmt.Errorf("put-if-absent %s: %w", key, err)
	}
	if err := s.syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("put-if-absent %s: sync dir: %w", key, err)
	}
	return nil
}

func (s *Store) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	// Walk the deepest directory that the prefix fully names.
	dirPart := prefix
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dirPart = prefix[:i]
	} else {
		dirPart = ""
	}
	start := s.root
	if dirPart != "" {
		p, err := s.path(dirPart)
		if err != nil {
			return nil, err
		}
		start = p
	}
	var out []blob.Info
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			rel, _ := filepath.Rel(s.root, p)
			rel = filepath.ToSlash(rel)
			if rel != "." && !strings.HasPrefix(rel+"/", prefix) && !strings.HasPrefix(prefix, rel+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		out = append(out, blob.Info{Key: key, Size: info.Size(), ModTime: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// ListFrom implements blob.ListerFrom: List restricted to keys greater
// than startAfter. It reads directory entries (names and types: no stat
// per file), skips directories whose keys all sort at or before
// startAfter, and stats only the files it returns, so listing the tail of
// a directory of millions of files costs one pass of readdir.
func (s *Store) ListFrom(ctx context.Context, prefix, startAfter string) ([]blob.Info, error) {
	dirPart := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dirPart = prefix[:i]
	}
	start := s.root
	if dirPart != "" {
		p, err := s.path(dirPart)
		if err != nil {
			return nil, err
		}
		start = p
	}
	rel, err := filepath.Rel(s.root, start)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	if rel = filepath.ToSlash(rel); rel == "." {
		rel = ""
	}
	var out []blob.Info
	if err := s.listFrom(ctx, start, rel, prefix, startAfter, &out); err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// listFrom appends the files under dir (whose key is rel) that match
// prefix and sort after startAfter.
func (s *Store) listFrom(ctx context.Context, dir, rel, prefix, startAfter string, out *[]blob.Info) error {
	f, err := os.Open(dir)
	if err != nil {
		if notExist(err) {
			return nil
		}
		return err
	}
	defer f.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, rerr := f.ReadDir(4096)
		for _, d := range ents {
			name := d.Name()
			key := name
			if rel != "" {
				key = rel + "/" + name
			}
			if d.IsDir() {
				sub := key + "/"
				if !strings.HasPrefix(sub, prefix) && !strings.HasPrefix(prefix, sub) {
					continue // no key below can have the prefix
				}
				if sub <= startAfter && !strings.HasPrefix(startAfter, sub) {
					continue // every key below sorts before startAfter
				}
				if err := s.listFrom(ctx, filepath.Join(dir, name), key, prefix, startAfter, out); err != nil {
					return err
				}
				continue
			}
			if strings.HasPrefix(name, ".tmp-") || key <= startAfter || !strings.HasPrefix(key, prefix) {
				continue
			}
			info, err := d.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted since readdir
				}
				return err
			}
			*out = append(*out, blob.Info{Key: key, Size: info.Size(), ModTime: info.ModTime()})
		}
		if errors.Is(rerr, io.EOF) || (rerr == nil && len(ents) == 0) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	st, err := os.Lstat(p)
	if notExist(err) || (err == nil && st.IsDir()) {
		return nil // no such object; a directory is only a prefix
	}
	if err := os.Remove(p); err != nil && !notExist(err) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// SweepTemp deletes the temp files (".tmp-*", left by a writer that
// crashed between writing and renaming) under prefix whose modification
// time is older than olderThan, and returns what it deleted (or, with
// dryRun, would delete), as keys. A temp file lives for the few
// milliseconds of one Put, so any retention of minutes is safe against a
// live writer. `silt table vacuum` calls it on local tables.
func (s *Store) SweepTemp(ctx context.Context, prefix string, olderThan time.Duration, dryRun bool) (keys []string, size int64, err error) {
	start := s.root
	if dir := strings.TrimSuffix(prefix, "/"); dir != "" {
		if start, err = s.path(dir); err != nil {
			return nil, 0, err
		}
	}
	cutoff := time.Now().Add(-olderThan)
	err = filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !info.ModTime().Before(cutoff) {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		if !dryRun {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		keys = append(keys, filepath.ToSlash(rel))
		size += info.Size()
		return nil
	})
	if err != nil {
		return keys, size, fmt.Errorf("sweep temp files under %q: %w", prefix, err)
	}
	return keys, size, nil
}
