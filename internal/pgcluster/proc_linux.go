package pgcluster

import "syscall"

// setParentDeathSignal makes the kernel send SIGQUIT (immediate shutdown)
// to the server if the thread that started it dies, so a crashed or killed
// test binary does not leave servers behind.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGQUIT }
