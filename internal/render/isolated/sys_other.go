//go:build !linux

package isolated

import "syscall"

// sysProcAttr: only Linux has Pdeathsig; the child's own timer ends it elsewhere.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// setDataLimit: only the watchdog and the GC limit bound memory outside Linux (the operator runs
// on Linux; this keeps the package building on developers' machines).
func setDataLimit(int64) {}
