// Package blob is silt's object-store interface: the only way Delta tables,
// Bronze and Silver files are read and written. Implementations: local (a
// directory on disk) and, later, S3. Keys are slash-separated paths relative
// to the store's root, without a leading slash.
package blob

import (
	"context"
	"errors"
	"io"
	"sort"
	"time"
)

// ErrNotExist is returned (wrapped) when a key does not exist.
var ErrNotExist = errors.New("object does not exist")

// ErrExists is returned (wrapped) by PutIfAbsent when the key already exists.
var ErrExists = errors.New("object already exists")

// Info describes one object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Reader reads a range-addressable object (Parquet needs ReadAt for footers).
type Reader interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// Store is an object store. All methods are safe for concurrent use.
type Store interface {
	// Get returns the whole object.
	Get(ctx context.Context, key string) ([]byte, error)
	// Open returns a ranged reader over the object.
	Open(ctx context.Context, key string) (Reader, error)
	// Put writes the object; readers see the old or the new object, never a part.
	Put(ctx context.Context, key string, data []byte) error
	// PutIfAbsent writes the object only if the key does not exist, atomically;
	// otherwise it returns an error wrapping ErrExists. Neither Put nor
	// PutIfAbsent keeps a reference to data after it returns (callers
	// reuse the buffer).
	PutIfAbsent(ctx context.Context, key string, data []byte) error
	// List returns every object whose key starts with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
	// Delete removes the object; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// ListerFrom is implemented by stores that can start a listing at a point
// in key order, so a caller that knows what it has already seen (a Delta
// log up to its last checkpoint) pays only for the keys after it. It is
// optional: use the ListFrom function, which falls back to List.
type ListerFrom interface {
	// ListFrom returns every object whose key starts with prefix and is
	// greater than startAfter (byte order), sorted by key. startAfter ""
	// lists the whole prefix, like List.
	ListFrom(ctx context.Context, prefix, startAfter string) ([]Info, error)
}

// ListFrom lists the objects under prefix whose key is greater than
// startAfter, sorted by key: through the store's ListFrom when it has one,
// else by List and dropping the keys up to startAfter.
func ListFrom(ctx context.Context, s Store, prefix, startAfter string) ([]Info, error) {
	if lf, ok := s.(ListerFrom); ok {
		return lf.ListFrom(ctx, prefix, startAfter)
	}
	infos, err := s.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	i := sort.Search(len(infos), func(i int) bool { return infos[i].Key > startAfter })
	return infos[i:], nil
}

// Join joins key parts with '/', skipping empty parts.
func Join(parts ...string) string {
	out := ""
	for _, p := range parts {
		if p == "" {
			continue
		}
		if out == "" {
			out = p
		} else {
			out = out + "/" + p
		}
	}
	return out
}
