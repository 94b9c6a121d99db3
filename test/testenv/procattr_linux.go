package testenv

import "syscall"

// sysProcAttr starts a manager in its own process group (Stop signals the group) and has the
// kernel kill it when the test process dies without stopping it (a test timeout panics past
// deferred calls).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
