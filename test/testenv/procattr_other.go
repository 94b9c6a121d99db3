//go:build !linux

package testenv

import "syscall"

// sysProcAttr starts a manager in its own process group: Stop signals the group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
