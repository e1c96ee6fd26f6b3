//go:build linux && !arm

package locallog

import (
	"os"
	"syscall"
)

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE: start write-back of the
// range's dirty pages that are not already under write-back, without
// waiting for it.
const syncFileRangeWrite = 2

// startWriteback is sync_file_range(2) with SYNC_FILE_RANGE_WRITE. Errors
// are ignored: it is only a hint (a kernel or file system without it
// returns ENOSYS or EINVAL, and fdatasync then writes everything itself),
// and fdatasync reports every write-back failure.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SyncFileRange(int(fd), off, n, syncFileRangeWrite)
	})
}
