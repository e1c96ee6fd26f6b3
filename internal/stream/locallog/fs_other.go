//go:build !linux

package locallog

import "os"

func datasync(f *os.File) error { return f.Sync() }

func allocate(*os.File, int64) error { return nil }
