// Package blobtest is the conformance suite every blob.Store implementation
// must pass (local directory, S3 on gofakes3 and on versitygw). Test-only.
//
// Use it from a _test.go file:
//
//	blobtest.Run(t, func(t *testing.T) blob.Store { return newEmptyStore(t) }, blobtest.Options{})
//
// Each subtest gets a fresh, empty store from the factory.
package blobtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/blob"
)

// Options adapts the suite to what a store can do.
type Options struct {
	// LargeSize is the size of the "large" objects (it should exceed the
	// store's multipart threshold). Default 11 MiB.
	LargeSize int
	// SkipLargePutIfAbsentExists, if not empty, skips the check that a
	// large (multipart) PutIfAbsent over an existing key fails, giving the
	// reason (a fake server that ignores If-None-Match on completion).
	SkipLargePutIfAbsentExists string
	// ManyKeys is how many keys the pagination test lists. Default 25; the
	// factory should set a small list page size so several pages are read.
	ManyKeys int
}

// Run runs the suite. newStore must return an empty store.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store, o Options) {
	if o.LargeSize == 0 {
		o.LargeSize = 11 << 20
	}
	if o.ManyKeys == 0 {
		o.ManyKeys = 25
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store, o Options)
	}{
		{"GetMissing", testGetMissing},
		{"PutGet", testPutGet},
		{"PutReplaces", testPutReplaces},
		{"Empty", testEmpty},
		{"Keys", testKeys},
		{"RangedRead", testRangedRead},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfAbsentAfterDelete", testPutIfAbsentAfterDelete},
		{"PutIfAbsentRace16", testPutIfAbsentRace},
		{"List", testList},
		{"ListPages", testListPages},
		{"Delete", testDelete},
		{"Large", testLarge},
		{"LargePutIfAbsentExists", testLargePutIfAbsentExists},
		{"ReadersSeeWholeObjects", testWholeObjects},
		{"CancelledContext", testCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t), o)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func mustPut(t *testing.T, s blob.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(ctx(t), key, data); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, s blob.Store, key string) []byte {
	t.Helper()
	b, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return b
}

// randBytes returns n deterministic pseudo-random bytes for seed.
func randBytes(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b) // never fails
	return b
}

func testGetMissing(t *testing.T, s blob.Store, o Options) {
	if _, err := s.Get(ctx(t), "nope/missing.json"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("Get of a missing key: got %v, want ErrNotExist", err)
	}
	if _, err := s.Open(ctx(t), "nope/missing.json"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("Open of a missing key: got %v, want ErrNotExist", err)
	}
	// A "directory" (a prefix of other keys) is not an object.
	mustPut(t, s, "dir/x", []byte("x"))
	if _, err := s.Get(ctx(t), "dir"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("Get of a key that is only a prefix: got %v, want ErrNotExist", err)
	}
	if _, err := s.Open(ctx(t), "dir"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("Open of a key that is only a prefix: got %v, want ErrNotExist", err)
	}
}

func testPutGet(t *testing.T, s blob.Store, o Options) {
	data := randBytes(1, 1000)
	mustPut(t, s, "a/b/c.bin", data)
	if got := mustGet(t, s, "a/b/c.bin"); !bytes.Equal(got, data) {
		t.Fatalf("Get returned %d bytes, not the %d put", len(got), len(data))
	}
}

func testPutReplaces(t *testing.T, s blob.Store, o Options) {
	mustPut(t, s, "k", []byte("first, longer value"))
	mustPut(t, s, "k", []byte("second"))
	if got := mustGet(t, s, "k"); string(got) != "second" {
		t.Fatalf("after two Puts Get = %q, want %q", got, "second")
	}
}

func testEmpty(t *testing.T, s blob.Store, o Options) {
	mustPut(t, s, "empty", nil)
	if got := mustGet(t, s, "empty"); len(got) != 0 {
		t.Fatalf("empty object read back as %d bytes", len(got))
	}
	if err := s.PutIfAbsent(ctx(t), "empty2", []byte{}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(ctx(t), "empty2")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != 0 {
		t.Fatalf("Size = %d, want 0", r.Size())
	}
	if n, err := r.ReadAt(make([]byte, 4), 0); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt on empty object = %d, %v; want 0, io.EOF", n, err)
	}
}

// testKeys uses the characters Delta paths contain: partition values with
// '=', URL escapes, spaces, '+', non-ASCII.
func testKeys(t *testing.T, s blob.Store, o Options) {
	keys := []string{
		"t/_delta_log/00000000000000000000.json",
		"t/year=2026/month=11/part-00000-3f2a.zstd.parquet",
		"t/city=S%C3%A3o Paulo/a b+c.parquet",
		"t/ключ/ü.json",
	}
	for i, k := range keys {
		mustPut(t, s, k, []byte(fmt.Sprint(i)))
	}
	for i, k := range keys {
		if got := string(mustGet(t, s, k)); got != fmt.Sprint(i) {
			t.Fatalf("Get(%q) = %q, want %q", k, got, fmt.Sprint(i))
		}
	}
	infos, err := s.List(ctx(t), "t/")
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(keys)
	slices.Sort(want)
	if got := keysOf(infos); !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
}

func testRangedRead(t *testing.T, s blob.Store, o Options) {
	data := randBytes(2, 100_000)
	mustPut(t, s, "f.parquet", data)
	r, err := s.Open(ctx(t), "f.parquet")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != int64(len(data)) {
		t.Fatalf("Size = %d, want %d", r.Size(), len(data))
	}
	for _, c := range []struct{ off, n int }{{0, 4}, {len(data) - 8, 8}, {50_000, 1234}, {0, len(data)}, {99_999, 1}} {
		p := make([]byte, c.n)
		n, err := r.ReadAt(p, int64(c.off))
		if err != nil && !(err == io.EOF && c.off+c.n == len(data)) {
			t.Fatalf("ReadAt(%d, %d): %v", c.off, c.n, err)
		}
		if n != c.n || !bytes.Equal(p, data[c.off:c.off+c.n]) {
			t.Fatalf("ReadAt(%d, %d) = %d bytes, wrong content", c.off, c.n, n)
		}
	}
	// Past the end: the bytes there, then io.EOF.
	p := make([]byte, 100)
	n, err := r.ReadAt(p, int64(len(data)-10))
	if n != 10 || err != io.EOF || !bytes.Equal(p[:10], data[len(data)-10:]) {
		t.Fatalf("ReadAt across the end = %d, %v; want 10, io.EOF", n, err)
	}
	if n, err := r.ReadAt(p, int64(len(data))); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d, %v; want 0, io.EOF", n, err)
	}
	// Reads are safe concurrently (Parquet readers fetch column chunks in parallel).
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			off := i * 10_000
			q := make([]byte, 5000)
			if _, err := r.ReadAt(q, int64(off)); err != nil {
				errs <- err
			} else if !bytes.Equal(q, data[off:off+5000]) {
				errs <- fmt.Errorf("concurrent ReadAt(%d): wrong content", off)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func testPutIfAbsent(t *testing.T, s blob.Store, o Options) {
	key := "t/_delta_log/00000000000000000001.json"
	if err := s.PutIfAbsent(ctx(t), key, []byte("mine")); err != nil {
		t.Fatalf("PutIfAbsent of a new key: %v", err)
	}
	err := s.PutIfAbsent(ctx(t), key, []byte("theirs"))
	if !errors.Is(err, blob.ErrExists) {
		t.Fatalf("PutIfAbsent of an existing key: got %v, want ErrExists", err)
	}
	// Even with the same bytes: the second call did not create it.
	if err := s.PutIfAbsent(ctx(t), key, []byte("mine")); !errors.Is(err, blob.ErrExists) {
		t.Fatalf("PutIfAbsent of an existing key with equal bytes: got %v, want ErrExists", err)
	}
	if got := mustGet(t, s, key); string(got) != "mine" {
		t.Fatalf("after a failed PutIfAbsent the object is %q, want %q", got, "mine")
	}
	// Put over a key created by PutIfAbsent replaces it.
	mustPut(t, s, key, []byte("replaced"))
	if got := mustGet(t, s, key); string(got) != "replaced" {
		t.Fatalf("Put after PutIfAbsent: %q", got)
	}
}

func testPutIfAbsentAfterDelete(t *testing.T, s blob.Store, o Options) {
	if err := s.PutIfAbsent(ctx(t), "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIfAbsent(ctx(t), "k", []byte("2")); err != nil {
		t.Fatalf("PutIfAbsent after Delete: %v", err)
	}
	if got := mustGet(t, s, "k"); string(got) != "2" {
		t.Fatalf("got %q", got)
	}
}

// testPutIfAbsentRace: 16 writers race on one key with different bytes:
// exactly one wins, the others get ErrExists, and the object is the
// winner's. Repeated on several keys to give races a chance.
func testPutIfAbsentRace(t *testing.T, s blob.Store, o Options) {
	const writers = 16
	for round := range 5 {
		key := fmt.Sprintf("race/_delta_log/%020d.json", round)
		start := make(chan struct{})
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				<-start
				errs[w] = s.PutIfAbsent(ctx(t), key, []byte(fmt.Sprintf("writer %d", w)))
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for w, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: writers %d and %d both won", round, winner, w)
				}
				winner = w
			case !errors.Is(err, blob.ErrExists):
				t.Fatalf("round %d: writer %d: %v (want nil or ErrExists)", round, w, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won", round)
		}
		if got := string(mustGet(t, s, key)); got != fmt.Sprintf("writer %d", winner) {
			t.Fatalf("round %d: object is %q, but writer %d won", round, got, winner)
		}
	}
}

func keysOf(infos []blob.Info) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Key
	}
	return out
}

func testList(t *testing.T, s blob.Store, o Options) {
	put := []string{"a/b1", "a/b/c", "a/b/d/e", "a/bz", "a/c", "b", "ab"}
	for _, k := range put {
		mustPut(t, s, k, []byte(k))
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a/b/c", "a/b/d/e", "a/b1", "a/bz", "a/c", "ab", "b"}},
		{"a/", []string{"a/b/c", "a/b/d/e", "a/b1", "a/bz", "a/c"}},
		{"a/b", []string{"a/b/c", "a/b/d/e", "a/b1", "a/bz"}},
		{"a/b/", []string{"a/b/c", "a/b/d/e"}},
		{"a/b/d/e", []string{"a/b/d/e"}},
		{"a", []string{"a/b/c", "a/b/d/e", "a/b1", "a/bz", "a/c", "ab"}},
		{"zzz/", nil},
		{"a/b/c/", nil},
	}
	for _, c := range cases {
		infos, err := s.List(ctx(t), c.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", c.prefix, err)
		}
		if got := keysOf(infos); !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
			t.Errorf("List(%q) = %q, want %q", c.prefix, got, c.want)
		}
		for _, in := range infos {
			if in.Size != int64(len(in.Key)) {
				t.Errorf("List(%q): %s has size %d, want %d", c.prefix, in.Key, in.Size, len(in.Key))
			}
			if in.ModTime.IsZero() {
				t.Errorf("List(%q): %s has no ModTime", c.prefix, in.Key)
			}
		}
	}
}

func testListPages(t *testing.T, s blob.Store, o Options) {
	var want []string
	for i := range o.ManyKeys {
		k := fmt.Sprintf("t/_delta_log/%020d.json", i)
		want = append(want, k)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(want))
	sem := make(chan struct{}, 8)
	for _, k := range want {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := s.PutIfAbsent(ctx(t), k, []byte("{}")); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mustPut(t, s, "t/other", []byte("x"))
	infos, err := s.List(ctx(t), "t/_delta_log/")
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(infos); !slices.Equal(got, want) {
		t.Fatalf("List returned %d keys, want %d in order:\n got %q\nwant %q", len(got), len(want), got, want)
	}
}

func testDelete(t *testing.T, s blob.Store, o Options) {
	mustPut(t, s, "d/x", []byte("x"))
	mustPut(t, s, "d/y", []byte("y"))
	if err := s.Delete(ctx(t), "d/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx(t), "d/x"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("Get after Delete: %v, want ErrNotExist", err)
	}
	if err := s.Delete(ctx(t), "d/x"); err != nil {
		t.Fatalf("Delete of a missing key: %v, want nil", err)
	}
	if err := s.Delete(ctx(t), "never/was"); err != nil {
		t.Fatalf("Delete of a never-written key: %v, want nil", err)
	}
	infos, err := s.List(ctx(t), "d/")
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(infos); !slices.Equal(got, []string{"d/y"}) {
		t.Fatalf("List after Delete = %q", got)
	}
}

func testLarge(t *testing.T, s blob.Store, o Options) {
	data := randBytes(3, o.LargeSize)
	mustPut(t, s, "big/put.parquet", data)
	if got := mustGet(t, s, "big/put.parquet"); !bytes.Equal(got, data) {
		t.Fatalf("large Put/Get: %d bytes back, content equal: %v", len(got), bytes.Equal(got, data))
	}
	data2 := randBytes(4, o.LargeSize+12345)
	if err := s.PutIfAbsent(ctx(t), "big/pia.parquet", data2); err != nil {
		t.Fatalf("large PutIfAbsent: %v", err)
	}
	r, err := s.Open(ctx(t), "big/pia.parquet")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != int64(len(data2)) {
		t.Fatalf("Size = %d, want %d", r.Size(), len(data2))
	}
	// A range across a 5 MiB part boundary, and the footer.
	for _, off := range []int{5<<20 - 100, len(data2) - 8} {
		p := make([]byte, min(200, len(data2)-off))
		if _, err := r.ReadAt(p, int64(off)); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(p, data2[off:off+len(p)]) {
			t.Fatalf("ReadAt(%d): wrong content", off)
		}
	}
	infos, err := s.List(ctx(t), "big/")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Size != int64(len(data2)) || infos[1].Size != int64(len(data)) {
		t.Fatalf("List(big/) = %+v", infos)
	}
}

func testLargePutIfAbsentExists(t *testing.T, s blob.Store, o Options) {
	if o.SkipLargePutIfAbsentExists != "" {
		t.Skip(o.SkipLargePutIfAbsentExists)
	}
	mustPut(t, s, "big/exists", []byte("small original"))
	err := s.PutIfAbsent(ctx(t), "big/exists", randBytes(5, o.LargeSize))
	if !errors.Is(err, blob.ErrExists) {
		t.Fatalf("large PutIfAbsent over an existing key: %v, want ErrExists", err)
	}
	if got := mustGet(t, s, "big/exists"); string(got) != "small original" {
		t.Fatalf("object changed to %d bytes", len(got))
	}
	// And when the existing object is large too.
	mustPut(t, s, "big/exists2", randBytes(6, o.LargeSize))
	if err := s.PutIfAbsent(ctx(t), "big/exists2", randBytes(7, o.LargeSize)); !errors.Is(err, blob.ErrExists) {
		t.Fatalf("large PutIfAbsent over a large existing key: %v, want ErrExists", err)
	}
	if got := mustGet(t, s, "big/exists2"); !bytes.Equal(got, randBytes(6, o.LargeSize)) {
		t.Fatal("large object changed")
	}
}

// testWholeObjects: while a writer replaces an object with one of two
// contents, readers only ever see one of the two, whole.
func testWholeObjects(t *testing.T, s blob.Store, o Options) {
	a, b := randBytes(8, 64<<10), randBytes(9, 96<<10)
	mustPut(t, s, "w", a)
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Go(func() {
		defer close(done)
		for i := range 40 {
			v := a
			if i%2 == 0 {
				v = b
			}
			if err := s.Put(ctx(t), "w", v); err != nil {
				errs <- err
				return
			}
		}
	})
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := s.Get(ctx(t), "w")
				if err != nil {
					errs <- fmt.Errorf("Get during Put: %w", err)
					return
				}
				if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
					errs <- fmt.Errorf("Get during Put returned %d bytes that are neither version", len(got))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func testCancelled(t *testing.T, s blob.Store, o Options) {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	// A store may ignore ctx for local I/O, but must not hang or panic, and
	// a remote store must fail.
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Put(c, "c", []byte("x"))
		_, _ = s.Get(c, "c")
		_, _ = s.List(c, "")
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("operations with a cancelled context did not return within 30s")
	}
}
