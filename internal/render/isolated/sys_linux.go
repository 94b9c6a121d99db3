package isolated

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr makes the kernel kill the child when the parent goes, so that no render outlives
// a manager killed mid-reconcile.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// setDataLimit caps the child's writable private mappings at what it has now plus budget: the Go
// runtime's heap is such mappings, and what it has at start (its first arenas, the binary's data)
// is not the chart's doing. Failing to set it leaves the watchdog alone; it is not an error.
func setDataLimit(budget int64) {
	now := vmData()
	if now <= 0 {
		return
	}
	limit := uint64(now + budget)
	_ = syscall.Setrlimit(syscall.RLIMIT_DATA, &syscall.Rlimit{Cur: limit, Max: limit})
}

// vmData returns VmData of /proc/self/status in bytes, or 0.
func vmData() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmData:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
