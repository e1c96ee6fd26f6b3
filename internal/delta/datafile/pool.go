package datafile

import (
	"math/bits"
	"sync"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// PoolAllocator is a memory.Allocator that keeps the buffers Arrow frees
// (Release of the last reference) for the next Allocate of the same size
// class, instead of leaving them to the garbage collector. For a writer
// that builds one large record after another (a snapshot chunk) this saves
// the allocation, the zeroing and the collection of every column buffer.
//
// Buffers of poolMin bytes and more are rounded up to a power of two and
// pooled; smaller ones are plain Go allocations. Unlike
// memory.GoAllocator, a reused buffer is not zeroed: Arrow's builders
// initialise what they read (validity bitmaps, offsets) and leave value
// slots of null entries undefined, as with any non-Go allocator. A buffer
// must not be used after its last Release; Arrow's reference counting
// guarantees that for arrays and records used by the rules.
type PoolAllocator struct {
	pools [poolClasses]sync.Pool // class c holds *[]byte of cap poolMin<<c
}

const (
	poolMinShift = 12 // 4 KiB
	poolMin      = 1 << poolMinShift
	poolClasses  = 17 // up to 256 MiB
)

var _ memory.Allocator = (*PoolAllocator)(nil)

// NewPoolAllocator returns an empty PoolAllocator.
func NewPoolAllocator() *PoolAllocator { return &PoolAllocator{} }

// poolClass returns the class of a buffer of size bytes, -1 if it is not pooled.
func poolClass(size int) int {
	if size <= poolMin {
		if size < poolMin/2 {
			return -1
		}
		return 0
	}
	c := bits.Len(uint(size-1)) - poolMinShift
	if c >= poolClasses {
		return -1
	}
	return c
}

// Allocate returns a buffer of size bytes (contents undefined for pooled sizes).
func (p *PoolAllocator) Allocate(size int) []byte {
	c := poolClass(size)
	if c < 0 {
		return make([]byte, size)
	}
	if v := p.pools[c].Get(); v != nil {
		return (*v.(*[]byte))[:size]
	}
	return make([]byte, size, poolMin<<c)
}

// Reallocate grows or shrinks b to size bytes, keeping its contents.
func (p *PoolAllocator) Reallocate(size int, b []byte) []byte {
	if size <= cap(b) {
		return b[:size]
	}
	nb := p.Allocate(size)
	copy(nb, b)
	p.Free(b)
	return nb
}

// Free returns b to its class's pool if it came from one.
func (p *PoolAllocator) Free(b []byte) {
	c := cap(b)
	if c < poolMin || c&(c-1) != 0 {
		return
	}
	k := bits.Len(uint(c)) - 1 - poolMinShift
	if k >= poolClasses {
		return
	}
	b = b[:c]
	p.pools[k].Put(&b)
}
