//go:build !linux

package pgcluster

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}
